package guestinit

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReseedRNG credits seed to the kernel's entropy pool (RNDADDENTROPY on
// /dev/urandom) and then makes the kernel reseed its CRNG at once
// (RNDRESEEDCRNG, Linux 4.17 and later), so output after the call depends
// on seed. Both need CAP_SYS_ADMIN.
func ReseedRNG(seed []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()

	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+(len(seed)+3)/4*4)
	*(*int32)(unsafe.Pointer(&info[0])) = int32(len(seed) * 8)
	*(*int32)(unsafe.Pointer(&info[4])) = int32(len(seed))
	copy(info[8:], seed)
	if err := ioctlPtr(int(f.Fd()), unix.RNDADDENTROPY, unsafe.Pointer(&info[0])); err != nil {
		return fmt.Errorf("RNDADDENTROPY with %d bytes: %w", len(seed), err)
	}
	if err := ioctlPtr(int(f.Fd()), unix.RNDRESEEDCRNG, nil); err != nil {
		return fmt.Errorf("RNDRESEEDCRNG: %w", err)
	}
	return nil
}

// SetClock sets the wall clock (CLOCK_REALTIME).
func SetClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// SetHostname sets the kernel hostname.
func SetHostname(name string) error {
	return unix.Sethostname([]byte(name))
}

// Poweroff flushes file systems and powers the machine off. It returns
// only if the reboot system call fails.
func Poweroff() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
