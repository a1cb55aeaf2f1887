package guestinit

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifreqFlags mirrors struct ifreq with the ifr_flags member of the union.
type ifreqFlags struct {
	Name  [unix.IFNAMSIZ]byte
	Flags uint16
	_     [22]byte // rest of the 24-byte union
}

// LinkUp sets the IFF_UP flag of the network interface name (for example
// "lo"), as `ip link set NAME up` does.
func LinkUp(name string) error {
	if len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up %s: open socket: %w", name, err)
	}
	defer unix.Close(fd)

	var req ifreqFlags
	copy(req.Name[:], name)
	if err := ioctlPtr(fd, unix.SIOCGIFFLAGS, unsafe.Pointer(&req)); err != nil {
		return fmt.Errorf("bring up %s: read flags: %w", name, err)
	}
	req.Flags |= unix.IFF_UP
	if err := ioctlPtr(fd, unix.SIOCSIFFLAGS, unsafe.Pointer(&req)); err != nil {
		return fmt.Errorf("bring up %s: set flags: %w", name, err)
	}
	return nil
}

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}
