package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize parses a byte count with an optional binary unit suffix: K, M,
// G or T (also KiB, MiB, GiB, TiB). A bare number is bytes.
func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{
		{"KIB", 10}, {"MIB", 20}, {"GIB", 30}, {"TIB", 40},
		{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40},
	}
	upper := strings.ToUpper(strings.TrimSpace(s))
	shift := uint(0)
	for _, u := range units {
		if strings.HasSuffix(upper, u.suffix) {
			upper = strings.TrimSuffix(upper, u.suffix)
			shift = u.shift
			break
		}
	}
	n, err := strconv.ParseUint(upper, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("not a positive size such as 512M or 2G")
	}
	if n > (1<<63)>>shift {
		return 0, fmt.Errorf("size is too large")
	}
	return n << shift, nil
}
