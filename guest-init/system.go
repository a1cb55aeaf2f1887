package guestinit

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReseedRNG credits seed to the kernel's entropy pool (RNDADDENTROPY on
// /dev/urandom) and then makes the kernel reseed its CRNG at once
// (RNDRESEEDCRNG, Linux 4.17 and later), so output after the call depends
// on seed. Both need CAP_SYS_ADMIN.
func ReseedRNG(seed []byte) error {
	// A raw descriptor, not an os.File: the device needs no poller
	// registration or finalizer for two ioctls.
	fd, err := unix.Open("/dev/urandom", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer unix.Close(fd)

	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+(len(seed)+3)/4*4)
	*(*int32)(unsafe.Pointer(&info[0])) = int32(len(seed) * 8)
	*(*int32)(unsafe.Pointer(&info[4])) = int32(len(seed))
	copy(info[8:], seed)
	if err := ioctlPtr(fd, unix.RNDADDENTROPY, unsafe.Pointer(&info[0])); err != nil {
		return fmt.Errorf("RNDADDENTROPY with %d bytes: %w", len(seed), err)
	}
	if err := ioctlPtr(fd, unix.RNDRESEEDCRNG, nil); err != nil {
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

// Poweroff stops every other process, remounts the root file system
// read-only so a root disk is left clean (an ext4 journal that still needs
// recovery cannot be mounted from a read-only disk later), and powers the
// machine off. It must run as PID 1, and returns only if the reboot system
// call fails.
func Poweroff() error {
	unix.Sync()
	stopAllProcesses()
	remountRootReadOnly()
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// stopAllProcesses sends SIGTERM, then SIGKILL after a grace period, to every
// process but PID 1 (kill(-1) skips the caller).
func stopAllProcesses() {
	if unix.Kill(-1, unix.SIGTERM) != nil {
		return
	}
	time.Sleep(200 * time.Millisecond)
	unix.Kill(-1, unix.SIGKILL)
}

// remountRootReadOnly retries for a short while, because files of killed
// processes close only once the kernel has finished tearing them down.
func remountRootReadOnly() {
	for attempt := 0; attempt < 50; attempt++ {
		err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
		if err == nil || !errors.Is(err, unix.EBUSY) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
