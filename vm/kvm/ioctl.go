package kvm

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	sysioctl "github.com/spore-vm/spore/vm/internal/ioctl"
)

// Error is a failed KVM ioctl. It names the request and the object it was
// made on, and unwraps to the errno.
type Error struct {
	// Op is the ioctl name as in the kernel headers, such as "KVM_RUN".
	Op string
	// Object names the handle, such as "vm" or "vcpu 1".
	Object string
	// Errno is the error the kernel returned.
	Errno syscall.Errno
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s on %s: %v", e.Op, e.Object, e.Errno)
}

func (e *Error) Unwrap() error { return e.Errno }

// ioctl issues request with an integer argument, retrying on EINTR.
func ioctl(fd int, request uintptr, arg uintptr) (uintptr, syscall.Errno) {
	return sysioctl.Call(fd, request, arg)
}

// ioctlPtr issues request with a pointer argument, retrying on EINTR; the
// pointee stays reachable until the kernel is done with it.
func ioctlPtr[T any](fd int, request uintptr, arg *T) (uintptr, syscall.Errno) {
	return sysioctl.CallPtr(fd, request, arg)
}

// wrap returns nil for a zero errno and an *Error otherwise.
func wrap(op, object string, errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return &Error{Op: op, Object: object, Errno: errno}
}

// IsUnsupported reports whether err means the kernel does not implement the
// request or the attribute (ENOTTY, EINVAL for unknown caps, ENXIO for
// unknown device attributes).
func IsUnsupported(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENXIO)
}
