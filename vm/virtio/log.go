package virtio

import (
	"log/slog"
	"sync/atomic"
)

// maxLoggedRepeats is how many guest-triggered messages a device logs
// before it logs only one in every 1000.
const maxLoggedRepeats = 16

// deviceLogger logs messages that a guest can trigger at will (malformed
// requests, I/O errors), rate-limited so that a misbehaving driver cannot
// flood the host's log. Each message carries the running count.
type deviceLogger struct {
	log   *slog.Logger
	count atomic.Uint64
}

func newDeviceLogger(logger *slog.Logger, args ...any) *deviceLogger {
	if logger == nil {
		logger = slog.Default()
	}
	return &deviceLogger{log: logger.With(args...)}
}

func (l *deviceLogger) allow() (uint64, bool) {
	n := l.count.Add(1)
	return n, n <= maxLoggedRepeats || n%1000 == 0
}

func (l *deviceLogger) warn(msg string, args ...any) {
	if n, ok := l.allow(); ok {
		l.log.Warn(msg, append(args, "count", n)...)
	}
}

func (l *deviceLogger) error(msg string, args ...any) {
	if n, ok := l.allow(); ok {
		l.log.Error(msg, append(args, "count", n)...)
	}
}
