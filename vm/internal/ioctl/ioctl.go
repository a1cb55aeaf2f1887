// Package ioctl issues ioctl system calls for spore's kernel bindings
// (KVM and userfaultfd).
package ioctl

import (
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Call issues request on fd with an integer argument, retrying when a signal
// interrupted the call, and returns the non-negative result.
func Call(fd int, request uintptr, arg uintptr) (uintptr, syscall.Errno) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), request, arg)
		if errno == unix.EINTR {
			continue
		}
		return r, errno
	}
}

// CallPtr issues request with a pointer to its argument struct, retrying on
// EINTR. The struct stays reachable until the kernel is done with it.
func CallPtr[T any](fd int, request uintptr, arg *T) (uintptr, syscall.Errno) {
	r, errno := Call(fd, request, uintptr(unsafe.Pointer(arg)))
	runtime.KeepAlive(arg)
	return r, errno
}

// Size returns the argument size encoded in bits 16-29 of an ioctl request
// number (the generic _IOC layout that arm64 and amd64 use).
func Size(request uintptr) uintptr {
	return (request >> 16) & 0x3fff
}
