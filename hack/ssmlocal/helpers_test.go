package main

import (
	"strings"
	"testing"
	"time"
)

func TestISODuration(t *testing.T) {
	tests := map[time.Duration]string{
		0:                                      "PT0S",
		91 * time.Millisecond:                  "PT0.091S",
		1500 * time.Millisecond:                "PT1.5S",
		62*time.Second + 500*time.Millisecond:  "PT1M2.5S",
		2 * time.Hour:                          "PT2H",
		time.Hour + time.Minute + time.Second:  "PT1H1M1S",
		time.Hour + 300*time.Microsecond + 700: "PT1H",
	}
	for d, want := range tests {
		if got := isoDuration(d); got != want {
			t.Errorf("isoDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestEpochTimeJSON(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	got, err := epochTime(ts).MarshalJSON()
	if err != nil || string(got) != "1714564800.123" {
		t.Errorf("MarshalJSON = %s, %v; want 1714564800.123", got, err)
	}
	if got := stringTime(ts); got != "2024-05-01T12:00:00.123Z" {
		t.Errorf("stringTime = %q", got)
	}
	if got := stringTime(time.Time{}); got != "" {
		t.Errorf("stringTime(zero) = %q, want empty", got)
	}
}

func TestCappedBuffer(t *testing.T) {
	b := newCappedBuffer(3)
	for _, chunk := range []string{"h", "é", "llo wörld", strings.Repeat("x", 100)} {
		if n, err := b.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want every byte consumed", chunk, n, err)
		}
	}
	if got := b.String(); got != "hél" {
		t.Errorf("String() = %q, want the first 3 characters", got)
	}
	if len(b.buf) > 3*4 {
		t.Errorf("kept %d bytes, want at most 12", len(b.buf))
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:4580": true,
		"[::1]:4580":     true,
		"0.0.0.0:4580":   false,
		":4580":          false,
		"10.0.0.1:4580":  false,
		"localhost:4580": false,
		"127.0.0.1":      false,
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestParseFlags(t *testing.T) {
	f, err := parseFlags([]string{"-instances", "x.json", "-region", "eu-north-1"})
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if f.listen != "127.0.0.1:4580" || f.account != "123456789012" || f.outputLimit != 24000 || f.region != "eu-north-1" {
		t.Errorf("defaults: %+v", f)
	}
	if _, err := parseFlags(nil); err == nil {
		t.Error("missing -instances accepted")
	}
	if _, err := parseFlags([]string{"-instances", "x", "-listen", "0.0.0.0:1"}); err == nil {
		t.Error("non-loopback -listen accepted")
	}
}

func TestNewUUID(t *testing.T) {
	id := newUUID()
	if len(id) != 36 || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) || id == newUUID() {
		t.Errorf("newUUID() = %q, want a random v4 UUID", id)
	}
}
