package naming

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestExpandHostlist(t *testing.T) {
	for in, want := range map[string][]string{
		"":                         nil,
		"(null)":                   nil,
		"compute-1":                {"compute-1"},
		"queue1-dy-c5-[1-3,5]":     {"queue1-dy-c5-1", "queue1-dy-c5-2", "queue1-dy-c5-3", "queue1-dy-c5-5"},
		"n[01-03]":                 {"n01", "n02", "n03"},
		"n[9-10]":                  {"n9", "n10"},
		"n[098-101]":               {"n098", "n099", "n100", "n101"},
		"a[1-2],b,c[7]":            {"a1", "a2", "b", "c7"},
		"rack[1-2]-n[01-02]":       {"rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"},
		"q-st-m5-[09-10]":          {"q-st-m5-09", "q-st-m5-10"},
		"queue1-dy-c5xlarge-[2-3]": {"queue1-dy-c5xlarge-2", "queue1-dy-c5xlarge-3"},
	} {
		got, err := ExpandHostlist(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ExpandHostlist(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"n[", "n]", "n[]", "n[1-]", "n[3-1]", "n[a-b]", "n[[1]]", "a,,b", "n[0-4000000000]", "a[1-99999]b[1-99999]", ","} {
		if got, err := ExpandHostlist(bad); err == nil {
			t.Errorf("ExpandHostlist(%q) = %d names, want an error", bad, len(got))
		}
	}
}

// Node lists that would expand to too much are an error, never a large
// allocation (ExpandHostlist bounds count, name length and bracket groups).
func TestHostlistBombs(t *testing.T) {
	for name, s := range map[string]string{
		"a billion hosts":             "n[1-999999999]",
		"a product of two ranges":     "a[1-99999]b[1-99999]",
		"many lists":                  strings.Repeat("n[1-60000],", 2) + "x",
		"names too long":              "[0-99998]" + strings.Repeat("x", 300),
		"one name too long":           strings.Repeat("y", MaxHostName+1),
		"thousands of bracket groups": "a" + strings.Repeat("[0]", 30000),
		"nine bracket groups":         "a" + strings.Repeat("[0-1]", maxGroups+1),
		"out of uint32":               "n[4294967296]",
	} {
		if names, err := ExpandHostlist(s); err == nil {
			t.Errorf("%s: %d names", name, len(names))
		}
	}
	// At the limits it still works.
	if names, err := ExpandHostlist("r[1-2]-" + strings.Repeat("[0-1]", maxGroups-1)); err != nil || len(names) != 1<<maxGroups {
		t.Errorf("%d groups: %d names, %v", maxGroups, len(names), err)
	}
	if names, err := ExpandHostlist("n[0-99999]"); err != nil || len(names) != MaxHosts {
		t.Errorf("%d hosts: %d names, %v", MaxHosts, len(names), err)
	}
}

// FuzzExpandHostlist: the expansion is bounded in count and in the size of
// each name (so in memory), whatever the input.
func FuzzExpandHostlist(f *testing.F) {
	for _, s := range []string{"n[01-03]", "a[1-2]-b[3-4],c", "x[", "q[0-99999]", "a[1-9]b[1-9]c[1-9]", "n[1-999999999]", "[0-9][0-9][0-9][0-9][0-9]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ExpandHostlist(s)
		if err != nil {
			if names != nil {
				t.Fatalf("%d names with error %v", len(names), err)
			}
			return
		}
		checkNames(t, names)
	})
}

func checkNames(t *testing.T, names []string) {
	t.Helper()
	if len(names) > MaxHosts {
		t.Fatalf("%d names", len(names))
	}
	for _, n := range names {
		if n == "" || len(n) > MaxHostName || strings.ContainsAny(n, ",[]") {
			t.Fatalf("node name %q", n)
		}
	}
}

func TestCompressHostlist(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"q-dy-c5-1"}, "q-dy-c5-1"},
		{[]string{"q-dy-c5-3", "q-dy-c5-1", "q-dy-c5-2", "q-dy-c5-7", "q-dy-c5-2"}, "q-dy-c5-[1-3,7]"},
		{[]string{"q-st-c5-1", "q-dy-c5-2", "q-dy-c5-1", "head"}, "q-dy-c5-[1-2],q-st-c5-1,head"},
		{[]string{"n01", "n02", "n9", "n10"}, "n[9-10],n01,n02"}, // zero padding is kept as it is
		{[]string{"n0", "n1"}, "n[0-1]"},
	} {
		got := CompressHostlist(tc.in)
		if got != tc.want {
			t.Errorf("CompressHostlist(%q) = %q, want %q", tc.in, got, tc.want)
			continue
		}
		back, err := ExpandHostlist(got)
		if err != nil {
			t.Fatal(err)
		}
		if want := slices.Compact(slices.Sorted(slices.Values(tc.in))); !slices.Equal(slices.Sorted(slices.Values(back)), want) {
			t.Errorf("ExpandHostlist(%q) = %q, want the names %q", got, back, want)
		}
	}
}

func TestCompressHostlistThousandNodes(t *testing.T) {
	var names []string
	for i := 1000; i >= 1; i-- {
		names = append(names, fmt.Sprintf("queue1-dy-c5xlarge-%d", i))
	}
	if got := CompressHostlist(names); got != "queue1-dy-c5xlarge-[1-1000]" {
		t.Errorf("got %q", got)
	}
}
