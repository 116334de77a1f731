package config

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written the Go way in YAML, env and flags ("15s", "2m").
type Duration time.Duration

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the Go spelling so `config validate --print` round-trips.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText accepts Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like 15s or 2m", b)
	}
	*d = Duration(v)
	return nil
}
