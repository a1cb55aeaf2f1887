package vm

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spore-vm/spore/vm/uffd"
)

// Pager supplies guest RAM on demand for a lazy restore. Offsets are
// relative to the start of guest RAM and aligned to ChunkSize.
type Pager interface {
	// ChunkSize returns the granularity of ReadChunk, a multiple of the
	// host page size.
	ChunkSize() int
	// ReadChunk returns the chunk at off. hole is true when the chunk is
	// all zeros; data is then unused. The returned data may be shorter
	// than ChunkSize only for the last chunk of RAM.
	ReadChunk(off uint64) (data []byte, hole bool, err error)
}

// PagerStats counts the work of a lazy restore.
type PagerStats struct {
	// Faults is the number of missing-page faults served.
	Faults uint64 `json:"faults"`
	// ChunksCopied and ChunksZeroed count chunks filled from the pager and
	// mapped as zero pages.
	ChunksCopied uint64 `json:"chunks_copied"`
	ChunksZeroed uint64 `json:"chunks_zeroed"`
	// ChunksShared counts faults and host accesses on a shared backing
	// that found the chunk already read by another machine. Most shared
	// chunks are not counted: a machine maps a chunk that is already in
	// the backing without a userfaultfd fault.
	ChunksShared uint64 `json:"chunks_shared,omitempty"`
	// BytesRead is the chunk data the pager returned.
	BytesRead uint64 `json:"bytes_read"`
	// HandlerNanos is the time spent serving faults.
	HandlerNanos uint64 `json:"handler_ns"`
}

// lazyMemory serves userfaultfd faults on guest RAM from a Pager, or from a
// SharedMemory that guest RAM maps privately.
type lazyMemory struct {
	fd     *uffd.FD
	ram    *guestRAM
	pager  Pager
	logger *slog.Logger
	// shared, when not nil, is the backing that ram maps, and pager is
	// its pager.
	shared *SharedMemory
	// failed records the first error of the handler; the VM is stopped
	// with it, because a guest page that cannot be filled cannot run.
	failed atomic.Pointer[error]
	// present has one bit per chunk of RAM that is filled, so host-side
	// accesses (ensure) skip chunks that need nothing.
	present []atomic.Uint64
	stats   struct {
		faults, copied, zeroed, shared, bytes, nanos atomic.Uint64
	}
	done chan struct{}
}

// startLazyMemory registers guest RAM with userfaultfd and serves faults
// until close. onError is called once if a fault cannot be served. shared
// is nil, or the backing that ram maps, and then pager is shared.pager.
// logger receives the warning when the shared backing is full.
func startLazyMemory(ram *guestRAM, pager Pager, shared *SharedMemory, logger *slog.Logger, onError func(error)) (*lazyMemory, error) {
	chunk := pager.ChunkSize()
	if chunk <= 0 || chunk%os.Getpagesize() != 0 {
		return nil, fmt.Errorf("pager chunk size %d is not a multiple of the page size %d", chunk, os.Getpagesize())
	}
	fd, err := uffd.Open()
	if err != nil {
		return nil, fmt.Errorf("lazy restore: %w", err)
	}
	if err := fd.Register(ram.hostAddr(), ram.size()); err != nil {
		fd.Close()
		return nil, fmt.Errorf("lazy restore: %w", err)
	}

	chunks := (ram.size() + uint64(chunk) - 1) / uint64(chunk)
	l := &lazyMemory{fd: fd, ram: ram, pager: pager, logger: logger, shared: shared, done: make(chan struct{}),
		present: make([]atomic.Uint64, (chunks+63)/64)}
	go l.serve(onError)
	return l, nil
}

func (l *lazyMemory) serve(onError func(error)) {
	defer close(l.done)
	for {
		fault, err := l.fd.ReadFault()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err == nil {
			l.stats.faults.Add(1)
			err = l.fill(fault.Address)
		}
		if err != nil {
			l.failed.CompareAndSwap(nil, &err)
			onError(err)
			return
		}
	}
}

// fill fills the whole chunk around addr. Filling chunks rather than pages
// matches the store's granularity, so each chunk is read once.
func (l *lazyMemory) fill(addr uintptr) error {
	start := time.Now()
	defer func() { l.stats.nanos.Add(uint64(time.Since(start))) }()

	base := l.ram.hostAddr()
	chunk := uint64(l.pager.ChunkSize())
	off := (uint64(addr-base) / chunk) * chunk
	length := min(chunk, l.ram.size()-off)
	if l.shared != nil {
		return l.fillShared(off, length)
	}
	defer l.markPresent(off / chunk)

	data, hole, err := l.pager.ReadChunk(off)
	if err != nil {
		return fmt.Errorf("page in guest RAM at offset %#x: %w", off, err)
	}
	if hole {
		l.stats.zeroed.Add(1)
		return l.fillPages(base+uintptr(off), length, nil)
	}
	if uint64(len(data)) > length {
		return fmt.Errorf("pager returned %d bytes for the chunk at %#x, RAM has %d there", len(data), off, length)
	}
	l.stats.copied.Add(1)
	l.stats.bytes.Add(uint64(len(data)))
	// A short chunk is padded with zeros to whole pages.
	if uint64(len(data)) < length {
		padded := make([]byte, length)
		copy(padded, data)
		data = padded
	}
	return l.fillPages(base+uintptr(off), length, data)
}

// fillShared makes the chunk at off present in the shared backing and
// wakes the threads that fault on it here, whose retried faults then map
// the backing's pages. A hole is mapped as zero pages in this mapping
// alone, so the backing never allocates pages for it. A chunk that the
// full backing could not take is copied into this mapping alone.
func (l *lazyMemory) fillShared(off, length uint64) error {
	result, err := l.shared.populate(off / uint64(l.pager.ChunkSize()))
	if err != nil {
		return err
	}
	dst := l.ram.hostAddr() + uintptr(off)
	switch {
	case result.hole:
		l.stats.zeroed.Add(1)
		err = l.fillPages(dst, length, nil)
	case result.private != nil:
		// On a MAP_PRIVATE shmem mapping UFFDIO_COPY installs an anonymous
		// page in this mapping (see SharedMemory), which is what a full
		// backing needs. Pages of the chunk that this mapping already maps
		// return EEXIST, and fillPages skips them.
		if result.fullErr != nil {
			l.warnFull(result.fullErr)
		}
		l.stats.copied.Add(1)
		l.stats.bytes.Add(result.bytesRead)
		err = l.fillPages(dst, length, result.private)
	case result.copied:
		l.stats.copied.Add(1)
		l.stats.bytes.Add(result.bytesRead)
		err = l.fd.Wake(dst, length)
	default:
		l.stats.shared.Add(1)
		err = l.fd.Wake(dst, length)
	}
	if err != nil {
		return err
	}
	l.markPresent(off / uint64(l.pager.ChunkSize()))
	return nil
}

// warnFull logs, once per backing, that the backing is full and chunks
// are copied into each machine's own memory.
func (l *lazyMemory) warnFull(err error) {
	if !l.shared.warnedFull.CompareAndSwap(false, true) {
		return
	}
	fix := "free host memory"
	if l.shared.dir != nil {
		fix = fmt.Sprintf("free space in %s (a tmpfs) or enlarge that tmpfs", l.shared.dirPath)
	}
	l.logger.Warn("shared guest memory is full: chunks that do not fit are copied into each guest's own memory and are not shared; "+fix,
		"backing", l.shared.describe(), "err", err)
}

// fillPages copies data (or zero pages when data is nil) into the range. If
// another fault already filled part of it, the rest is filled page by page,
// skipping pages that exist.
func (l *lazyMemory) fillPages(dst uintptr, length uint64, data []byte) error {
	err := l.copyOrZero(dst, length, data)
	if err == nil || !uffd.IsExist(err) {
		return err
	}
	page := uint64(os.Getpagesize())
	for p := uint64(0); p < length; p += page {
		var part []byte
		if data != nil {
			part = data[p : p+page]
		}
		if err := l.copyOrZero(dst+uintptr(p), page, part); err != nil && !uffd.IsExist(err) {
			return err
		}
	}
	return nil
}

func (l *lazyMemory) copyOrZero(dst uintptr, length uint64, data []byte) error {
	for {
		var err error
		if data == nil {
			err = l.fd.ZeroPage(dst, length)
		} else {
			err = l.fd.Copy(dst, data)
		}
		// EAGAIN: the mapping changed under the copy; try again.
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		return err
	}
}

func (l *lazyMemory) markPresent(chunk uint64) {
	l.present[chunk/64].Or(1 << (chunk % 64))
}

func (l *lazyMemory) isPresent(chunk uint64) bool {
	return l.present[chunk/64].Load()&(1<<(chunk%64)) != 0
}

// ensure fills every chunk of [off, off+length) of RAM that is not present
// yet, from the calling goroutine. Host code calls it before touching guest
// RAM, so that no Go thread ever blocks in a userfaultfd fault: such a
// thread cannot be preempted, and a garbage collection waiting for it would
// also stop the fault handler.
func (l *lazyMemory) ensure(off, length uint64) error {
	if length == 0 {
		return nil
	}
	chunk := uint64(l.pager.ChunkSize())
	for c := off / chunk; c <= (off+length-1)/chunk; c++ {
		if l.isPresent(c) {
			continue
		}
		if err := l.fill(l.ram.hostAddr() + uintptr(c*chunk)); err != nil {
			return err
		}
	}
	return nil
}

func (l *lazyMemory) snapshotStats() PagerStats {
	return PagerStats{
		Faults:       l.stats.faults.Load(),
		ChunksCopied: l.stats.copied.Load(),
		ChunksZeroed: l.stats.zeroed.Load(),
		ChunksShared: l.stats.shared.Load(),
		BytesRead:    l.stats.bytes.Load(),
		HandlerNanos: l.stats.nanos.Load(),
	}
}

// close stops serving. Guest RAM must not be touched afterwards unless
// every page was filled.
func (l *lazyMemory) close() {
	l.fd.Close()
	<-l.done
}
