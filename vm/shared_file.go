package vm

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// sharedMemoryParent is the tmpfs mount point that contains the per-user
// directory of DefaultSharedMemoryDir.
const sharedMemoryParent = "/dev/shm"

// maxOpenAttempts bounds the retries of OpenSharedMemory when the file it
// opened was removed or replaced before it got its lock.
const maxOpenAttempts = 100

// ErrSharedMemoryFile matches the errors of OpenSharedMemory about its
// directory or file, which the user must fix, or avoid by not sharing
// memory through a file. The message of such an error is the cause's.
var ErrSharedMemoryFile = errors.New("unusable shared memory file")

// sharedFileError is an error of the backing's directory or file.
type sharedFileError struct{ err error }

func (e sharedFileError) Error() string   { return e.err.Error() }
func (e sharedFileError) Unwrap() []error { return []error{e.err, ErrSharedMemoryFile} }

// DefaultSharedMemoryDir returns the directory for file backings of this
// user, /dev/shm/spore-UID, when /dev/shm is a tmpfs, and "" otherwise.
// With "", callers use NewSharedMemory, which shares only within one
// process. It does not create the directory.
func DefaultSharedMemoryDir() string {
	var st unix.Statfs_t
	if err := unix.Statfs(sharedMemoryParent, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return ""
	}
	return filepath.Join(sharedMemoryParent, fmt.Sprintf("spore-%d", os.Geteuid()))
}

// OpenSharedMemory opens the file backing called name in dir, which every
// process of this user that opens the same name maps, and fills it lazily
// from pager as NewSharedMemory does. name must determine the content: spore
// uses the content ID of the memory index. Every process writes the chunks
// it misses into the file itself, and a process finds chunks that another
// one wrote without reading them from its pager.
//
// dir must be on tmpfs, because userfaultfd reports missing pages of a
// file mapping only for shmem. It is created with mode 0700 when missing
// (its parent must exist). A dir that is a symlink, is not owned by this
// user, or is open to group or others is rejected. The file is created
// with mode 0600 and sized to size bytes. An existing file of another
// non-zero size is an error.
//
// Each process holds a shared flock on the file while it uses it. Close
// removes the file when it can take the lock exclusively, that is when it
// is the last user. Opening also removes the other files of dir that no
// process holds a lock on: a process that was killed leaves its file
// behind with no lock. logger receives a debug line for each file removed
// that way and a warning for each file it could not check; nil means
// slog.Default().
func OpenSharedMemory(dir, name string, size uint64, pager Pager, logger *slog.Logger) (*SharedMemory, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := checkSharedSize(size, pager); err != nil {
		return nil, err
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("invalid shared memory file name %q: use a plain file name without /", name)
	}
	dirFile, err := openSharedDir(dir)
	if err != nil {
		return nil, sharedFileError{err}
	}

	sweepSharedDir(dirFile, dir, name, logger)
	file, err := openBackingFile(dirFile, dir, name, size)
	if err != nil {
		dirFile.Close()
		return nil, sharedFileError{err}
	}
	s := newSharedMemory(file, size, pager)
	s.dir, s.dirPath, s.name = dirFile, dir, name
	return s, nil
}

// openSharedDir creates dir with mode 0700 when it is missing, opens it
// without following a symlink and checks that it is a tmpfs directory of
// this user that no one else may enter.
func openSharedDir(dir string) (*os.File, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("shared memory directory %q is not an absolute path: pass an absolute path", dir)
	}
	created := true
	if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrExist) {
		created = false
	} else if err != nil {
		return nil, fmt.Errorf("create the shared memory directory: %w (its parent directory must exist)", err)
	}

	if fi, err := os.Lstat(dir); err != nil {
		return nil, fmt.Errorf("shared memory directory: %w", err)
	} else if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("shared memory directory %s is a symlink: remove it, and spore creates a directory there", dir)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("shared memory directory %s is not a directory: remove it, and spore creates a directory there", dir)
	}
	// O_NOFOLLOW: a symlink put in place since the check fails here.
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the shared memory directory %s: %w", dir, err)
	}
	dirFile := os.NewFile(uintptr(fd), dir)
	if created {
		// Mkdir's mode passed through the umask; make it exactly 0700.
		if err := unix.Fchmod(fd, 0o700); err != nil {
			dirFile.Close()
			return nil, fmt.Errorf("set mode 0700 on the shared memory directory %s: %w", dir, err)
		}
	}
	if err := checkSharedDir(fd, dir); err != nil {
		dirFile.Close()
		return nil, err
	}
	return dirFile, nil
}

// checkSharedDir checks the open directory fd: owned by this user, no
// access for group and others, on tmpfs.
func checkSharedDir(fd int, dir string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat the shared memory directory %s: %w", dir, err)
	}
	if uid := uint32(os.Geteuid()); st.Uid != uid {
		return fmt.Errorf("shared memory directory %s is owned by uid %d, not by this user (uid %d): remove it, or use a directory of your own", dir, st.Uid, uid)
	}
	if perm := st.Mode & 0o777; perm&0o077 != 0 {
		return fmt.Errorf("shared memory directory %s has mode %#o, which gives other users access: run chmod 700 %s", dir, perm, dir)
	}
	var fsStat unix.Statfs_t
	if err := unix.Fstatfs(fd, &fsStat); err != nil {
		return fmt.Errorf("statfs the shared memory directory %s: %w", dir, err)
	}
	if fsStat.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("shared memory directory %s is not on tmpfs, and userfaultfd serves missing pages of file mappings only on tmpfs: use a directory on tmpfs, such as one under /dev/shm", dir)
	}
	return nil
}

// openBackingFile opens or creates the backing file with a shared lock.
// Between the open and the lock, the last user of an existing file may
// have removed it, or a sweep may have removed a new one. The path then
// names another inode or none, so it opens the path again.
func openBackingFile(dir *os.File, dirPath, name string, size uint64) (*os.File, error) {
	path := filepath.Join(dirPath, name)
	dirFD := int(dir.Fd())
	for range maxOpenAttempts {
		fd, err := unix.Openat(dirFD, name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open the shared memory file %s: %w (remove it if it is not a regular file)", path, err)
		}
		if err := flockRetry(fd, unix.LOCK_SH); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lock the shared memory file %s: %w", path, err)
		}
		st, same, err := namesFile(dirFD, name, fd)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("shared memory file %s: %w", path, err)
		}
		if !same {
			unix.Close(fd)
			continue
		}

		file := os.NewFile(uintptr(fd), path)
		if err := checkBackingFile(file, st, size); err != nil {
			file.Close()
			return nil, err
		}
		return file, nil
	}
	return nil, fmt.Errorf("open the shared memory file %s: it was removed or replaced %d times while being opened: retry the command", path, maxOpenAttempts)
}

// checkBackingFile checks an opened backing file, whose status is st, and
// sizes it when it is new. Two processes that both find it empty both size
// it, to the same size.
func checkBackingFile(file *os.File, st unix.Stat_t, size uint64) error {
	path := file.Name()
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("shared memory file %s is not a regular file: remove it", path)
	}
	if uid := uint32(os.Geteuid()); st.Uid != uid {
		return fmt.Errorf("shared memory file %s is owned by uid %d, not by this user (uid %d): remove it", path, st.Uid, uid)
	}
	switch {
	case st.Size == 0:
		if err := file.Truncate(int64(size)); err != nil {
			return fmt.Errorf("size the shared memory file %s to %d MiB: %w", path, size>>20, err)
		}
	case uint64(st.Size) != size:
		return fmt.Errorf("shared memory file %s has %d bytes, expected %d for this guest: remove it if no spore process uses it", path, st.Size, size)
	}
	return nil
}

// namesFile reports whether name in the directory dirFD is the inode open
// as fd, and returns fd's status. A missing name is not an error.
func namesFile(dirFD int, name string, fd int) (unix.Stat_t, bool, error) {
	var open, named unix.Stat_t
	if err := unix.Fstat(fd, &open); err != nil {
		return open, false, err
	}
	err := unix.Fstatat(dirFD, name, &named, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return open, false, nil
	}
	if err != nil {
		return open, false, err
	}
	return open, open.Dev == named.Dev && open.Ino == named.Ino, nil
}

// flockRetry calls flock, again when a signal interrupted it.
func flockRetry(fd, operation int) error {
	for {
		err := unix.Flock(fd, operation)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// closeFile releases a file backing: it removes the file when no other
// process holds a lock on it, then closes it and its directory.
//
// Taking LOCK_EX over our LOCK_SH drops the shared lock first, and a
// failed LOCK_NB request does not restore it (flock_lock_inode in
// fs/locks.c). Both requests of two closing processes are serialized on
// the inode's lock list, so the one that comes second finds no other
// lock and removes the file.
func (s *SharedMemory) closeFile() error {
	var removeErr error
	fd := int(s.file.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err == nil {
		removeErr = s.removeIfNamed(fd)
	}
	return errors.Join(removeErr, s.file.Close(), s.dir.Close())
}

// removeIfNamed removes the backing's name when it still names the inode
// open as fd. The caller holds LOCK_EX on fd.
func (s *SharedMemory) removeIfNamed(fd int) error {
	dirFD := int(s.dir.Fd())
	_, same, err := namesFile(dirFD, s.name, fd)
	if err != nil || !same {
		return err
	}
	if err := unix.Unlinkat(dirFD, s.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove the shared memory file %s: %w", s.Path(), err)
	}
	return nil
}

// sweepSharedDir removes the regular files of dir other than keep that no
// process holds a lock on. A file that cannot be checked is left alone and
// logged.
func sweepSharedDir(dir *os.File, dirPath, keep string, logger *slog.Logger) {
	// A second descriptor for the listing, because ReadDir moves the
	// offset of the one it reads.
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		logger.Warn("cannot list the shared memory directory to remove unused files", "dir", dirPath, "err", err)
		return
	}
	listing := os.NewFile(uintptr(fd), dirPath)
	entries, err := listing.ReadDir(-1)
	listing.Close()
	if err != nil {
		logger.Warn("cannot list the shared memory directory to remove unused files", "dir", dirPath, "err", err)
		return
	}

	for _, e := range entries {
		if e.Name() == keep || !e.Type().IsRegular() {
			continue
		}
		removed, err := removeUnused(int(dir.Fd()), e.Name())
		path := filepath.Join(dirPath, e.Name())
		switch {
		case err != nil:
			logger.Warn("cannot check whether a shared memory file is in use, so it stays", "file", path, "err", err)
		case removed:
			logger.Debug("removed an unused shared memory file, left by a process that did not close it", "file", path)
		}
	}
}

// removeUnused removes name from the directory dirFD when no process
// holds a lock on it, and reports whether it did.
func removeUnused(dirFD int, name string) (bool, error) {
	fd, err := unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)

	err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The name may have been removed and created again since the open, and
	// the new file is not the one that was found unlocked.
	_, same, err := namesFile(dirFD, name, fd)
	if err != nil || !same {
		return false, err
	}
	if err := unix.Unlinkat(dirFD, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, err
	}
	return true, nil
}

// inFile reports whether every page of [off, off+length) is in a file
// backing's page cache, where another process may have written it.
// SEEK_HOLE on tmpfs takes the inode lock that writes hold and counts
// pages that are not up to date as holes (shmem_file_llseek and
// mapping_seek_hole_data, Linux 6.1), so it never reports a page that a
// write is still filling. A memfd has no other writer, so its chunk
// states are complete.
func (s *SharedMemory) inFile(off, length uint64) bool {
	if s.dir == nil {
		return false
	}
	hole, err := unix.Seek(int(s.file.Fd()), int64(off), unix.SEEK_HOLE)
	return err == nil && uint64(hole) >= off+length
}
