package guestinit

import (
	"io"
	"log"
	"os"

	"golang.org/x/sys/unix"
)

// LogPrefix starts every line the init writes to the console.
const LogPrefix = "spore-init: "

// OpenConsole opens /dev/console for logging. Before devtmpfs is mounted
// it may not exist, so OpenConsole then returns the inherited stderr. The
// kernel connects that to the console when the initramfs has /dev/console.
func OpenConsole() io.Writer {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		return f
	}
	return os.Stderr
}

// NewLogger returns a logger that writes lines with LogPrefix to w.
func NewLogger(w io.Writer) *log.Logger {
	return log.New(w, LogPrefix, log.Lmsgprefix)
}
