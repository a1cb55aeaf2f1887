package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// SharedMemory is the guest RAM of one snapshot, filled lazily from a Pager
// into a shmem file that several restored machines map privately: a memfd
// that machines of this process share (NewSharedMemory), or a file on
// tmpfs that machines of every process of this user share
// (OpenSharedMemory). A page that no machine wrote is one page of the
// file's page cache, mapped by every machine that touched it. A guest
// write makes a private copy in that machine alone (copy-on-write of a
// MAP_PRIVATE mapping), so machines stay isolated and KVM's dirty log
// still records the write.
//
// Faults are served through userfaultfd in MISSING mode on each machine's
// private mapping. For a shmem mapping that mode reports a fault when the
// page is missing from the file's page cache. The handler writes the
// chunk into the file with pwrite and wakes the faulting thread with
// UFFDIO_WAKE, and the retried fault maps the page cache page. UFFDIO_COPY
// is not used because on a MAP_PRIVATE shmem mapping it installs an
// anonymous page in that one mapping and leaves the file empty
// (mfill_atomic_pte in mm/userfaultfd.c, Linux 6.1). Holes are mapped with
// UFFDIO_ZEROPAGE in each machine and never allocate pages of the file.
// The tests in shared_test.go and TestShareMemoryChildren in vm/guest
// check this on Linux 6.1 with KVM in the testbed.
//
// When the file cannot take a chunk because tmpfs or memory is full, the
// handler copies that chunk into the faulting machine's own mapping with
// UFFDIO_COPY instead, so the guest runs on without sharing that chunk.
//
// A SharedMemory is safe for concurrent use. Two machines of one process
// that fault on the same chunk read it from the Pager once.
type SharedMemory struct {
	file      *os.File
	size      uint64
	pager     Pager
	chunkSize uint64

	// dir is the directory of a file backing, opened without following
	// symlinks, and dirPath and name its path and the file's name in it.
	// dir is nil for a memfd.
	dir     *os.File
	dirPath string
	name    string
	// writeAt writes chunk data into file at an offset. It is file.WriteAt
	// except in tests, which make it fail as a full tmpfs would.
	writeAt func(data []byte, off int64) (int, error)
	// warnedFull is set once a machine logged that the backing is full.
	warnedFull atomic.Bool

	// state has one chunkState per chunk.
	state []atomic.Uint32

	mu sync.Mutex
	// filling has the chunks being read and written now; later callers
	// wait for the first one.
	filling map[uint64]*chunkFill

	stats struct {
		copied, holes, found, private, bytes atomic.Uint64
	}
}

// chunkState is the content of a chunk of a SharedMemory.
type chunkState = uint32

const (
	chunkMissing chunkState = iota
	chunkData
	chunkHole
)

// chunkFill is one reading of a chunk that other callers wait for.
type chunkFill struct {
	done   chan struct{}
	result chunkResult
	err    error
}

// SharedMemoryStats count the work of a SharedMemory across its machines.
type SharedMemoryStats struct {
	// ChunksCopied is the number of chunks read from the pager into the
	// backing, ChunksHoles the number of all-zero chunks found.
	ChunksCopied uint64 `json:"chunks_copied"`
	ChunksHoles  uint64 `json:"chunks_holes"`
	// ChunksFound is the number of chunks that another process had
	// already written into a file backing, so this one did not read them.
	ChunksFound uint64 `json:"chunks_found,omitempty"`
	// ChunksPrivate is the number of times a chunk did not fit into the
	// backing (tmpfs or memory full) and was copied into one machine's
	// own memory instead, where no other machine shares it.
	ChunksPrivate uint64 `json:"chunks_private,omitempty"`
	// BytesRead is the chunk data the pager returned.
	BytesRead uint64 `json:"bytes_read"`
	// ResidentBytes is the memory the backing file holds now: page cache
	// pages counted once, however many machines and processes map them.
	ResidentBytes uint64 `json:"resident_bytes"`
}

// NewSharedMemory creates an empty memfd of size bytes, filled from pager
// as machines restored with RestoreShared touch it. Only machines of this
// process share it. size must be a whole number of host pages. Call Close
// once every machine that maps it is closed.
func NewSharedMemory(size uint64, pager Pager) (*SharedMemory, error) {
	if err := checkSharedSize(size, pager); err != nil {
		return nil, err
	}

	fd, err := unix.MemfdCreate("spore-guest-ram", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("create a memfd for shared guest memory: %w", err)
	}
	file := os.NewFile(uintptr(fd), "memfd:spore-guest-ram")
	if err := file.Truncate(int64(size)); err != nil {
		file.Close()
		return nil, fmt.Errorf("size the shared guest memory memfd to %d MiB: %w", size>>20, err)
	}
	// A memfd that shrank would raise SIGBUS in every machine mapping it.
	if _, err := unix.FcntlInt(file.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		file.Close()
		return nil, fmt.Errorf("seal the shared guest memory memfd: %w", err)
	}
	return newSharedMemory(file, size, pager), nil
}

// checkSharedSize checks that size and the pager's chunk size are whole
// numbers of host pages.
func checkSharedSize(size uint64, pager Pager) error {
	chunk := pager.ChunkSize()
	page := uint64(os.Getpagesize())
	switch {
	case chunk <= 0 || chunk%os.Getpagesize() != 0:
		return fmt.Errorf("pager chunk size %d is not a multiple of the page size %d", chunk, page)
	case size == 0 || size%page != 0:
		return fmt.Errorf("shared guest memory of %d bytes is not a whole number of %d-byte pages", size, page)
	}
	return nil
}

// newSharedMemory returns a SharedMemory over file, which holds size bytes.
func newSharedMemory(file *os.File, size uint64, pager Pager) *SharedMemory {
	chunk := uint64(pager.ChunkSize())
	s := &SharedMemory{
		file:      file,
		size:      size,
		pager:     pager,
		chunkSize: chunk,
		state:     make([]atomic.Uint32, (size+chunk-1)/chunk),
		filling:   map[uint64]*chunkFill{},
	}
	s.writeAt = file.WriteAt
	return s
}

// Path returns the backing file's path, or "" for a memfd.
func (s *SharedMemory) Path() string {
	if s.dir == nil {
		return ""
	}
	return filepath.Join(s.dirPath, s.name)
}

// describe names the backing in messages.
func (s *SharedMemory) describe() string {
	if s.dir == nil {
		return "the shared memfd"
	}
	return s.Path()
}

// Size returns the guest RAM size in bytes.
func (s *SharedMemory) Size() uint64 { return s.size }

// Stats returns the counters of the backing and its resident size.
func (s *SharedMemory) Stats() SharedMemoryStats {
	stats := SharedMemoryStats{
		ChunksCopied:  s.stats.copied.Load(),
		ChunksHoles:   s.stats.holes.Load(),
		ChunksFound:   s.stats.found.Load(),
		ChunksPrivate: s.stats.private.Load(),
		BytesRead:     s.stats.bytes.Load(),
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(s.file.Fd()), &st); err == nil {
		// st_blocks is in 512-byte units whatever the file system's block size.
		stats.ResidentBytes = uint64(st.Blocks) * 512
	}
	return stats
}

// Close releases the backing. A file backing is removed when no other
// process uses it (see OpenSharedMemory). Machines that still map it keep
// their pages but can no longer fault in new ones, so close it after them.
func (s *SharedMemory) Close() error {
	if s.dir != nil {
		return s.closeFile()
	}
	return s.file.Close()
}

// mapPrivate maps the whole backing copy-on-write. MAP_NORESERVE: a guest
// that never writes most of its RAM should not be charged for private
// copies of it against the host's overcommit limit.
func (s *SharedMemory) mapPrivate() ([]byte, error) {
	mem, err := unix.Mmap(int(s.file.Fd()), 0, int(s.size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("map %d MiB of shared guest RAM: %w", s.size>>20, err)
	}
	return mem, nil
}

// chunkResult is the outcome of populate for one chunk.
type chunkResult struct {
	hole bool
	// copied is true when this call read the chunk from the pager, which
	// returned bytesRead bytes.
	copied    bool
	bytesRead uint64
	// private, when not nil, is the chunk's data padded to whole pages,
	// which the backing could not take because it is full. fullErr is the
	// write's error. The caller copies the data into its own mapping.
	private []byte
	fullErr error
}

// populate makes chunk c present in the backing, unless it is a hole or
// the backing is full. Concurrent callers for one chunk wait for the
// first, which reads it once. A failed read is not remembered, so a later
// fault tries again, and neither is a full backing, so a later fault
// tries to write the chunk again.
func (s *SharedMemory) populate(c uint64) (chunkResult, error) {
	switch s.state[c].Load() {
	case chunkData:
		return chunkResult{}, nil
	case chunkHole:
		return chunkResult{hole: true}, nil
	}

	s.mu.Lock()
	// Check again under the lock: a fill may have ended since the load.
	switch s.state[c].Load() {
	case chunkData:
		s.mu.Unlock()
		return chunkResult{}, nil
	case chunkHole:
		s.mu.Unlock()
		return chunkResult{hole: true}, nil
	}
	if fill, ok := s.filling[c]; ok {
		s.mu.Unlock()
		<-fill.done
		// Waiters did not read the chunk, so they only map it or copy it.
		return chunkResult{hole: fill.result.hole, private: fill.result.private}, fill.err
	}
	fill := &chunkFill{done: make(chan struct{})}
	s.filling[c] = fill
	s.mu.Unlock()

	result, err := s.readChunk(c)
	fill.result, fill.err = result, err

	s.mu.Lock()
	switch {
	case err != nil, result.private != nil:
	case result.hole:
		s.state[c].Store(chunkHole)
	default:
		s.state[c].Store(chunkData)
	}
	delete(s.filling, c)
	s.mu.Unlock()
	close(fill.done)
	return result, err
}

// readChunk reads chunk c from the pager and writes it into the backing,
// unless another process already wrote it there. It holds the chunk's
// lock meanwhile, so a process that faults on it at the same time waits
// and then finds it.
func (s *SharedMemory) readChunk(c uint64) (chunkResult, error) {
	off := c * s.chunkSize
	length := min(s.chunkSize, s.size-off)
	unlock := s.lockChunk(off, length)
	defer unlock()
	if s.inFile(off, length) {
		s.stats.found.Add(1)
		return chunkResult{}, nil
	}

	data, hole, err := s.pager.ReadChunk(off)
	if err != nil {
		return chunkResult{}, fmt.Errorf("page in shared guest RAM at offset %#x: %w", off, err)
	}
	if hole {
		s.stats.holes.Add(1)
		return chunkResult{hole: true}, nil
	}
	if uint64(len(data)) > length {
		return chunkResult{}, fmt.Errorf("pager returned %d bytes for the chunk at %#x, RAM has %d there", len(data), off, length)
	}
	n := uint64(len(data))
	s.stats.bytes.Add(n)

	// The whole chunk is written, padded with zeros: a page left out of the
	// backing would fault as missing again on every access.
	if n < length {
		padded := make([]byte, length)
		copy(padded, data)
		data = padded
	}
	// Processes of a file backing each write the chunks they miss. Two
	// writers of one chunk write identical bytes, because the file's name
	// is the memory index's content ID. A writer killed or out of space
	// part way leaves only whole pages in the file. shmem_file_write_iter
	// runs generic_perform_write under the inode lock, and that loop copies
	// one page per step. It checks fatal_signal_pending only between
	// steps. Each step faults in the source (fault_in_iov_iter_readable),
	// allocates the page (shmem_write_begin, where ENOSPC stops the loop),
	// copies with copy_page_from_iter_atomic and marks the page up to date
	// in shmem_write_end. If a source fault cut a copy short,
	// shmem_write_end would zero the rest of the page and mark it up to
	// date, and the next step would write the rest unless the writer was
	// killed in between. Our source is heap memory this process has just
	// written, which is resident, so the copy is not cut short. (See
	// mm/filemap.c and mm/shmem.c; function names as of Linux 6.1.)
	// NOTE: the source page could still be reclaimed to swap between the
	// fault-in and the copy. A SIGKILL at that moment would leave a page
	// with zeros in place of data; nothing detects that.
	if _, err := s.writeAt(data, int64(off)); err != nil {
		if !isBackingFull(err) {
			return chunkResult{}, fmt.Errorf("write guest RAM chunk at %#x into the shared backing: %w", off, err)
		}
		s.stats.private.Add(1)
		return chunkResult{copied: true, bytesRead: n, private: data, fullErr: err}, nil
	}
	s.stats.copied.Add(1)
	return chunkResult{copied: true, bytesRead: n}, nil
}

// isBackingFull reports whether a write failed because the backing has no
// room: ENOSPC when the tmpfs is full, EDQUOT over a tmpfs quota (Linux
// 6.6 and newer), EFBIG past a file size limit, ENOMEM when the kernel
// could not allocate a page (a memory cgroup limit, for example).
func isBackingFull(err error) bool {
	for _, errno := range []unix.Errno{unix.ENOSPC, unix.EDQUOT, unix.EFBIG, unix.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
