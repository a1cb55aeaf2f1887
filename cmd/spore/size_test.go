package main

import "testing"

func TestParseSize(t *testing.T) {
	good := map[string]uint64{
		"512M": 512 << 20, "1G": 1 << 30, "1g": 1 << 30, "2GiB": 2 << 30,
		"4096": 4096, "64K": 64 << 10,
	}
	for in, want := range good {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1G", "1.5G", "G", "12X", "99999999999T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}
