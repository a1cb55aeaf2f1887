package virtio

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestDeviceLoggerRateLimits(t *testing.T) {
	var out bytes.Buffer
	l := newDeviceLogger(slog.New(slog.NewTextHandler(&out, nil)), "virtio_device", 2)
	for range 2000 {
		l.warn("malformed request")
	}
	lines := strings.Count(out.String(), "\n")
	if want := maxLoggedRepeats + 2; lines != want {
		t.Errorf("logged %d lines for 2000 repeats, want %d (the first %d, then at 1000 and 2000)", lines, want, maxLoggedRepeats)
	}
	if !strings.Contains(out.String(), "count=2000") {
		t.Errorf("last line does not carry the running count 2000:\n%s", out.String())
	}
}
