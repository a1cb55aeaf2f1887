package vm

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// chunkLockWait bounds how long a process waits for another process that
// reads the same chunk into a file backing. After it, the process reads
// the chunk itself, which writes the same bytes, so the lock only saves
// work and never decides what the file holds.
const chunkLockWait = 10 * time.Second

// Polling intervals for a chunk lock held by another process, chosen for
// reads of one chunk that take around a millisecond (an estimate).
const (
	chunkLockPollMin = 200 * time.Microsecond
	chunkLockPollMax = 10 * time.Millisecond
)

// lockChunk takes a write lock on the bytes [off, off+length) of a file
// backing, so that when processes fault on one chunk at once, one reads it
// from its store and the others then find it in the file. The lock is an
// open file description lock (F_OFD_SETLK): each process's descriptor of
// the file is a separate owner, and the kernel drops the lock when the
// owner closes the file or dies. Locks of one backing never conflict with
// each other, because they share an owner, and populate already
// serializes the fills of one chunk within a backing.
//
// unlock releases the lock. When the lock is not taken within
// chunkLockWait, or the kernel lacks OFD locks (before Linux 3.15), the
// caller proceeds without one and unlock does nothing.
func (s *SharedMemory) lockChunk(off, length uint64) (unlock func()) {
	noop := func() {}
	if s.dir == nil {
		return noop
	}
	fd := int(s.file.Fd())
	lock := unix.Flock_t{Type: unix.F_WRLCK, Whence: int16(unix.SEEK_SET), Start: int64(off), Len: int64(length)}

	deadline := time.Now().Add(chunkLockWait)
	poll := chunkLockPollMin
	for {
		err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lock)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EINTR) {
			return noop
		}
		if time.Now().After(deadline) {
			return noop
		}
		time.Sleep(poll)
		poll = min(2*poll, chunkLockPollMax)
	}

	return func() {
		unlock := lock
		unlock.Type = unix.F_UNLCK
		unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &unlock)
	}
}
