package kvm

import (
	"sync"

	"golang.org/x/sys/unix"
)

// fd owns one file descriptor. Close is safe to call more than once and from
// several goroutines; only the first call closes the descriptor.
type fd struct {
	raw  int
	once sync.Once
	err  error
}

func newFD(raw int) *fd { return &fd{raw: raw} }

// Int returns the raw descriptor. It is only valid until Close.
func (f *fd) Int() int { return f.raw }

// Close closes the descriptor once and returns the result of that close.
func (f *fd) Close() error {
	f.once.Do(func() { f.err = unix.Close(f.raw) })
	return f.err
}
