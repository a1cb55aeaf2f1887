// Package kvm is the thin, typed layer between spore's VMM and the Linux
// KVM API: ioctl numbers, mirrors of the kernel structs, and owned file
// descriptors for the system, VM, vCPU and device handles.
//
// Nothing here knows about boards or devices. Every ioctl goes through one
// helper that retries EINTR and wraps the errno in an *Error that names the
// ioctl and the object, so callers match errno values with errors.Is.
//
// The definitions build on every GOOS/GOARCH so that their sizes are checked
// by unit tests on any development machine; calling them only works on
// Linux.
package kvm
