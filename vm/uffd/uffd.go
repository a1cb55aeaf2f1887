// Package uffd wraps Linux userfaultfd: a file descriptor through which a
// process serves page faults on memory it registered, by copying in a page
// (UFFDIO_COPY) or mapping the zero page (UFFDIO_ZEROPAGE).
//
// spore registers guest RAM with userfaultfd on restore, so that pages come
// from the object store only when the guest, or KVM on its behalf, touches
// them. Faults raised inside the kernel (KVM reading guest memory) are only
// delivered to a userfaultfd created without UFFD_USER_MODE_ONLY, which an
// unprivileged process may do through /dev/userfaultfd (Linux 6.1 and
// newer, given read-write access to it) or when the sysctl
// vm.unprivileged_userfaultfd is 1.
package uffd

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	sysioctl "github.com/spore-vm/spore/vm/internal/ioctl"
)

// DevicePath is the userfaultfd device of Linux 6.1 and newer.
const DevicePath = "/dev/userfaultfd"

// ioctl numbers from include/uapi/linux/userfaultfd.h (Linux 6.1), type 0xAA.
const (
	_USERFAULTFD_IOC_NEW = 0xAA00
	_UFFDIO_API          = 0xC018AA3F // _IOWR(0xAA, 0x3F, struct uffdio_api)
	_UFFDIO_REGISTER     = 0xC020AA00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	_UFFDIO_UNREGISTER   = 0x8010AA01 // _IOR(0xAA, 0x01, struct uffdio_range)
	_UFFDIO_WAKE         = 0x8010AA02 // _IOR(0xAA, 0x02, struct uffdio_range)
	_UFFDIO_COPY         = 0xC028AA03 // _IOWR(0xAA, 0x03, struct uffdio_copy)
	_UFFDIO_ZEROPAGE     = 0xC020AA04 // _IOWR(0xAA, 0x04, struct uffdio_zeropage)
)

const (
	uffdAPI = 0xAA
	// eventPagefault is UFFD_EVENT_PAGEFAULT in uffd_msg.event.
	eventPagefault = 0x12
	// registerModeMissing is UFFDIO_REGISTER_MODE_MISSING: report faults on
	// pages that are not present.
	registerModeMissing = 1 << 0
	// pagefaultFlagWrite is UFFD_PAGEFAULT_FLAG_WRITE.
	pagefaultFlagWrite = 1 << 0
)

// uffdioAPI mirrors struct uffdio_api.
type uffdioAPI struct {
	API      uint64
	Features uint64
	Ioctls   uint64
}

// uffdioRange mirrors struct uffdio_range.
type uffdioRange struct {
	Start uint64
	Len   uint64
}

// uffdioRegister mirrors struct uffdio_register.
type uffdioRegister struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

// uffdioCopy mirrors struct uffdio_copy. The kernel stores the number of
// bytes copied, or a negated errno, in Copy.
type uffdioCopy struct {
	Dst  uint64
	Src  uint64
	Len  uint64
	Mode uint64
	Copy int64
}

// uffdioZeropage mirrors struct uffdio_zeropage.
type uffdioZeropage struct {
	Range    uffdioRange
	Mode     uint64
	Zeropage int64
}

// msgSize is sizeof(struct uffd_msg).
const msgSize = 32

// Fault is one page fault read from the descriptor.
type Fault struct {
	// Address is the faulting host virtual address, not page aligned.
	Address uintptr
	// Write is true when the access that faulted was a write.
	Write bool
}

// FD is an open userfaultfd. Reads block in the Go runtime's poller, so a
// handler goroutine does not hold an OS thread while it waits, and Close
// wakes it.
type FD struct {
	file *os.File
	// raw is file's descriptor, kept apart because os.File.Fd would switch
	// the descriptor to blocking mode and take it out of the poller.
	raw int
}

// Open creates a userfaultfd that also receives faults raised by the kernel
// (such as KVM accessing guest memory), and completes the API handshake.
func Open() (*FD, error) {
	raw, err := openRaw()
	if err != nil {
		return nil, err
	}
	// The handshake must precede os.NewFile: the poller registers the
	// descriptor at once, and an uninitialized userfaultfd polls as
	// EPOLLERR, which the poller would keep reporting.
	api := uffdioAPI{API: uffdAPI}
	if _, errno := sysioctl.CallPtr(raw, _UFFDIO_API, &api); errno != 0 {
		unix.Close(raw)
		return nil, fmt.Errorf("UFFDIO_API: %w", errno)
	}
	return &FD{file: os.NewFile(uintptr(raw), "userfaultfd"), raw: raw}, nil
}

// openRaw tries /dev/userfaultfd first, whose file permissions grant
// unprivileged users kernel-mode faults, then the userfaultfd system call.
func openRaw() (int, error) {
	const flags = unix.O_CLOEXEC | unix.O_NONBLOCK

	dev, devErr := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if devErr == nil {
		defer unix.Close(dev)
		r, errno := sysioctl.Call(dev, _USERFAULTFD_IOC_NEW, flags)
		if errno == 0 {
			return int(r), nil
		}
		devErr = errno
	}

	r, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, flags, 0, 0)
	if errno == 0 {
		return int(r), nil
	}
	if errno == unix.EPERM || errno == unix.EACCES {
		return -1, fmt.Errorf("userfaultfd not permitted (%s: %v; system call: %v): "+
			"grant read-write access to %s, or set the sysctl vm.unprivileged_userfaultfd=1", DevicePath, devErr, errno, DevicePath)
	}
	return -1, fmt.Errorf("userfaultfd: %w (the kernel needs CONFIG_USERFAULTFD)", errno)
}

// Close closes the descriptor. Threads blocked on a fault in registered
// memory get SIGBUS from then on. Close may be called more than once.
func (f *FD) Close() error {
	err := f.file.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

func (f *FD) fd() int { return f.raw }

// Register reports missing-page faults in [addr, addr+length) to this
// descriptor. addr and length must be page aligned.
func (f *FD) Register(addr uintptr, length uint64) error {
	reg := uffdioRegister{Range: uffdioRange{Start: uint64(addr), Len: length}, Mode: registerModeMissing}
	if _, errno := sysioctl.CallPtr(f.fd(), _UFFDIO_REGISTER, &reg); errno != 0 {
		return fmt.Errorf("UFFDIO_REGISTER [%#x, +%#x): %w", addr, length, errno)
	}
	return nil
}

// Unregister stops reporting faults for the range.
func (f *FD) Unregister(addr uintptr, length uint64) error {
	r := uffdioRange{Start: uint64(addr), Len: length}
	if _, errno := sysioctl.CallPtr(f.fd(), _UFFDIO_UNREGISTER, &r); errno != 0 {
		return fmt.Errorf("UFFDIO_UNREGISTER [%#x, +%#x): %w", addr, length, errno)
	}
	return nil
}

// ReadFault blocks until the next page fault and returns it. It returns an
// error wrapping os.ErrClosed after Close.
func (f *FD) ReadFault() (Fault, error) {
	var msg [msgSize]byte
	for {
		n, err := f.file.Read(msg[:])
		if err != nil {
			return Fault{}, err
		}
		if n != msgSize {
			return Fault{}, fmt.Errorf("userfaultfd read returned %d bytes, expected %d", n, msgSize)
		}
		if msg[0] != eventPagefault {
			// Only page faults are requested; skip anything else.
			continue
		}
		// struct uffd_msg: event u8, three reserved fields to byte 8, then
		// the pagefault union: flags u64 at 8, address u64 at 16.
		flags := *(*uint64)(unsafe.Pointer(&msg[8]))
		address := *(*uint64)(unsafe.Pointer(&msg[16]))
		return Fault{Address: uintptr(address), Write: flags&pagefaultFlagWrite != 0}, nil
	}
}

// Copy atomically copies len(src) bytes into the registered range at dst and
// wakes the faulting threads. dst and len(src) must be page aligned. An
// error wrapping unix.EEXIST means another fault already filled a page.
func (f *FD) Copy(dst uintptr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	c := uffdioCopy{Dst: uint64(dst), Src: uint64(uintptr(unsafe.Pointer(&src[0]))), Len: uint64(len(src))}
	_, errno := sysioctl.CallPtr(f.fd(), _UFFDIO_COPY, &c)
	keepAlive(src)
	if errno != 0 {
		return fmt.Errorf("UFFDIO_COPY to %#x (%d bytes): %w", dst, len(src), errno)
	}
	return nil
}

// ZeroPage maps zero pages at [dst, dst+length) and wakes the faulting
// threads.
func (f *FD) ZeroPage(dst uintptr, length uint64) error {
	z := uffdioZeropage{Range: uffdioRange{Start: uint64(dst), Len: length}}
	if _, errno := sysioctl.CallPtr(f.fd(), _UFFDIO_ZEROPAGE, &z); errno != 0 {
		return fmt.Errorf("UFFDIO_ZEROPAGE at %#x (%d bytes): %w", dst, length, errno)
	}
	return nil
}

// Wake wakes threads waiting on faults in the range without filling it,
// after another handler filled the pages.
func (f *FD) Wake(addr uintptr, length uint64) error {
	r := uffdioRange{Start: uint64(addr), Len: length}
	if _, errno := sysioctl.CallPtr(f.fd(), _UFFDIO_WAKE, &r); errno != 0 {
		return fmt.Errorf("UFFDIO_WAKE [%#x, +%#x): %w", addr, length, errno)
	}
	return nil
}

// IsExist reports whether err means the page was already present.
func IsExist(err error) bool { return errors.Is(err, syscall.EEXIST) }
