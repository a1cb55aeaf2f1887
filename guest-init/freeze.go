package guestinit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ioctl numbers of linux/fs.h: _IOWR('X', 119, int) and _IOWR('X', 120, int).
const (
	ioctlFIFREEZE = 0xc0045877
	ioctlFITHAW   = 0xc0045878
)

// FreezeRoot syncs and freezes the file system mounted at /, or thaws it
// when thaw is true. While it is frozen, every write to it blocks and its
// disk holds a consistent file system with an empty journal. Freezing a
// file system that is frozen already and thawing one that is not both
// succeed, so a host can thaw a resumed guest without knowing whether the
// snapshot was taken frozen.
func FreezeRoot(ctx context.Context, thaw bool) error {
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	defer unix.Close(fd)

	if thaw {
		err := unix.IoctlSetInt(fd, ioctlFITHAW, 0)
		if errors.Is(err, unix.EINVAL) {
			return nil // not frozen
		}
		if err != nil {
			return fmt.Errorf("thaw /: %w", err)
		}
		return nil
	}

	unix.Sync()
	err = unix.IoctlSetInt(fd, ioctlFIFREEZE, 0)
	switch {
	case errors.Is(err, unix.EBUSY):
		return nil // frozen already
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("freeze /: the root file system does not support freezing (is the guest running from its initramfs?): %w", err)
	case err != nil:
		return fmt.Errorf("freeze /: %w", err)
	}
	return nil
}
