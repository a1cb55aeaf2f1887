package guestinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Mount is one mount(2) call.
type Mount struct {
	Source string
	Target string // absolute path
	FSType string
	Flags  uintptr
	Data   string
	Mode   os.FileMode // of Target when it must be created
}

// EarlyMounts returns the file systems the init mounts first, below
// root: proc, sysfs, devtmpfs, devpts (with a ptmx that everyone can open,
// so PTY sessions of any user work), and tmpfs on /run and /tmp.
func EarlyMounts(root string) []Mount {
	const nosuid, nodev, noexec = unix.MS_NOSUID, unix.MS_NODEV, unix.MS_NOEXEC
	j := func(p string) string { return filepath.Join(root, p) }
	return []Mount{
		{Source: "proc", Target: j("/proc"), FSType: "proc", Flags: nosuid | nodev | noexec, Mode: 0o555},
		{Source: "sysfs", Target: j("/sys"), FSType: "sysfs", Flags: nosuid | nodev | noexec, Mode: 0o555},
		{Source: "devtmpfs", Target: j("/dev"), FSType: "devtmpfs", Flags: nosuid, Data: "mode=0755", Mode: 0o755},
		{Source: "devpts", Target: j("/dev/pts"), FSType: "devpts", Flags: nosuid | noexec, Data: "gid=5,mode=0620,ptmxmode=0666", Mode: 0o755},
		{Source: "tmpfs", Target: j("/run"), FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=0755", Mode: 0o755},
		{Source: "tmpfs", Target: j("/tmp"), FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=1777", Mode: 0o1777},
	}
}

// MountAll creates each target and mounts it. A target that is already a
// mount point of the same type is left alone (the kernel mounts devtmpfs
// itself when CONFIG_DEVTMPFS_MOUNT is set and the root is not an
// initramfs).
func MountAll(mounts []Mount) error {
	for _, m := range mounts {
		if err := os.MkdirAll(m.Target, m.Mode.Perm()|0o700); err != nil {
			return fmt.Errorf("create mount point %s: %w", m.Target, err)
		}
		err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data)
		if errors.Is(err, unix.EBUSY) && isMountOf(m.Target, m.FSType) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mount %s (%s) on %s with %q: %w", m.Source, m.FSType, m.Target, m.Data, err)
		}
	}
	return nil
}

// isMountOf reports whether path is the root of a mount of fsType.
func isMountOf(path, fsType string) bool {
	var st unix.Statfs_t
	if unix.Statfs(path, &st) != nil {
		return false
	}
	magic := map[string]int64{"proc": unix.PROC_SUPER_MAGIC, "sysfs": unix.SYSFS_MAGIC,
		"devtmpfs": unix.TMPFS_MAGIC, "tmpfs": unix.TMPFS_MAGIC, "devpts": unix.DEVPTS_SUPER_MAGIC}
	want, ok := magic[fsType]
	return ok && int64(st.Type) == want
}

// MountRoot mounts the root disk dev of type fsType on target.
func MountRoot(dev, fsType, target string, readOnly bool) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create root mount point %s: %w", target, err)
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, target, fsType, flags, ""); err != nil {
		mode := "read-write"
		if readOnly {
			mode = "read-only"
		}
		return fmt.Errorf("mount root disk %s (%s, %s) on %s: %w; check spore.root and spore.rootfstype", dev, fsType, mode, target, err)
	}
	return nil
}

// SwitchRoot makes newRoot the root directory, as switch_root does for an
// initramfs (pivot_root does not work on the initramfs root): it moves
// the mounts listed in keep (such as /dev, /proc) below newRoot, moves
// newRoot onto /, and chroots into it. The init process, its open files
// and its goroutines (the agent) keep running; the initramfs files stay in
// memory because nothing deletes them.
func SwitchRoot(newRoot string, keep []string) error {
	for _, m := range keep {
		target := filepath.Join(newRoot, m)
		// A symlink in the image (some images have proc -> /proc) would
		// resolve into the initramfs and make the move fail with ELOOP, so
		// it is replaced by a directory. A read-only root cannot be fixed.
		if info, err := os.Lstat(target); err == nil && !info.IsDir() {
			if err := os.Remove(target); err != nil {
				return fmt.Errorf("switch root: %s in the root disk is not a directory and cannot be replaced by one: %w", m, err)
			}
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("switch root: create %s: %w", target, err)
		}
		if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("switch root: move mount %s to %s: %w", m, target, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root: chdir %s: %w", newRoot, err)
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot %s: %w", newRoot, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: chdir /: %w", err)
	}
	return nil
}
