package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// field is one leaf setting, addressed by its dotted path.
type field struct {
	Path  string
	Help  string
	value reflect.Value
}

// EnvPrefix starts every environment variable that sets a field.
const EnvPrefix = "SPOTRESCUE_"

// EnvConfigPath names the config file; it is not a field.
const EnvConfigPath = EnvPrefix + "CONFIG"

// EnvName is the environment variable for the field: scratch.root -> SPOTRESCUE_SCRATCH_ROOT.
func (f field) EnvName() string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_").Replace(f.Path))
}

// FlagName is the command-line flag for the field: scratch.path_template -> scratch-path-template.
func (f field) FlagName() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(f.Path)
}

func (f field) isBool() bool { return f.value.Kind() == reflect.Bool }

// kindHint says what a value must look like, for error messages.
func (f field) kindHint() string {
	switch {
	case f.value.Type() == reflect.TypeOf(Duration(0)):
		return "a duration like 15s or 2m"
	case f.value.Kind() == reflect.Bool:
		return "true or false"
	case f.value.Kind() == reflect.Int:
		return "a whole number"
	case f.value.Kind() == reflect.Slice:
		return "a list of strings (comma-separated in env and flags)"
	}
	return "a string"
}

// set parses s into the field according to its type.
func (f field) set(s string) error {
	switch {
	case f.value.Type() == reflect.TypeOf(Duration(0)):
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return err
		}
		f.value.Set(reflect.ValueOf(d))
	case f.value.Kind() == reflect.String:
		f.value.SetString(s)
	case f.value.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not %s", s, f.kindHint())
		}
		f.value.SetBool(b)
	case f.value.Kind() == reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not %s", s, f.kindHint())
		}
		f.value.SetInt(int64(n))
	case f.value.Kind() == reflect.Slice && f.value.Type().Elem().Kind() == reflect.String:
		var items []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		f.value.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported setting type %s", f.value.Type())
	}
	return nil
}

// get renders the field's current value in the syntax set accepts.
func (f field) get() string {
	switch v := f.value.Interface().(type) {
	case Duration:
		return v.String()
	case []string:
		return strings.Join(v, ",")
	default:
		return fmt.Sprint(v)
	}
}

// fields lists every leaf setting of c, in declaration order, bound to c.
func fields(c *Config) []field {
	var out []field
	walk(reflect.ValueOf(c).Elem(), "", &out)
	return out
}

func walk(v reflect.Value, prefix string, out *[]field) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := yamlKey(sf)
		if key == "" {
			continue
		}
		path := prefix + key
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(Duration(0)) {
			walk(fv, path+".", out)
			continue
		}
		*out = append(*out, field{Path: path, Help: sf.Tag.Get("help"), value: fv})
	}
}

func yamlKey(sf reflect.StructField) string {
	key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	if key == "-" {
		return ""
	}
	return key
}

// Paths lists every setting's dotted path, sorted; documentation and tests use it.
func Paths() []string {
	c := Default()
	var out []string
	for _, f := range fields(&c) {
		out = append(out, f.Path)
	}
	sort.Strings(out)
	return out
}

// Setting describes one configuration field for reference documentation.
type Setting struct {
	Path, Env, Flag, Default, Help string
}

// Settings lists every field with its spellings and default value.
func Settings() []Setting {
	c := Default()
	var out []Setting
	for _, f := range fields(&c) {
		out = append(out, Setting{Path: f.Path, Env: f.EnvName(), Flag: "--" + f.FlagName(), Default: f.get(), Help: f.Help})
	}
	return out
}
