package vm

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// SharedMemory is the guest RAM of one snapshot, filled lazily from a Pager
// into a memfd (shmem) that several restored machines of this process map
// privately. A page that no machine wrote is one page of the memfd's page
// cache, mapped by every machine that touched it. A guest write makes a
// private copy in that machine alone (copy-on-write of a MAP_PRIVATE
// mapping), so machines stay isolated and KVM's dirty log still records
// the write.
//
// Faults are served through userfaultfd in MISSING mode on each machine's
// private mapping. For a shmem mapping that mode reports a fault when the
// page is missing from the memfd's page cache. The handler writes the
// chunk into the memfd with pwrite and wakes the faulting thread with
// UFFDIO_WAKE, and the retried fault maps the page cache page. UFFDIO_COPY
// is not used because on a MAP_PRIVATE shmem mapping it installs an
// anonymous page in that one mapping and leaves the memfd empty
// (mfill_atomic_pte in mm/userfaultfd.c, Linux 6.1). Holes are mapped with
// UFFDIO_ZEROPAGE in each machine and never allocate memfd pages. The
// tests in shared_test.go and TestShareMemoryChildren in vm/guest check
// this on Linux 6.1 with KVM in the testbed.
//
// A SharedMemory is safe for concurrent use. Two machines that fault on
// the same chunk read it from the Pager once.
type SharedMemory struct {
	file      *os.File
	size      uint64
	pager     Pager
	chunkSize uint64

	// state has one chunkState per chunk.
	state []atomic.Uint32

	mu sync.Mutex
	// filling has the chunks being read and written now; later callers
	// wait for the first one.
	filling map[uint64]*chunkFill

	stats struct {
		copied, holes, bytes atomic.Uint64
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
	done chan struct{}
	hole bool
	err  error
}

// SharedMemoryStats count the work of a SharedMemory across its machines.
type SharedMemoryStats struct {
	// ChunksCopied is the number of chunks read from the pager into the
	// memfd, ChunksHoles the number of all-zero chunks found.
	ChunksCopied uint64 `json:"chunks_copied"`
	ChunksHoles  uint64 `json:"chunks_holes"`
	// BytesRead is the chunk data the pager returned.
	BytesRead uint64 `json:"bytes_read"`
	// ResidentBytes is the memory the memfd holds now: page cache pages
	// counted once, however many machines map them.
	ResidentBytes uint64 `json:"resident_bytes"`
}

// NewSharedMemory creates an empty memfd of size bytes, filled from pager
// as machines restored with RestoreShared touch it. size must be a whole
// number of host pages. Call Close once every machine that maps it is
// closed.
func NewSharedMemory(size uint64, pager Pager) (*SharedMemory, error) {
	chunk := pager.ChunkSize()
	page := uint64(os.Getpagesize())
	switch {
	case chunk <= 0 || chunk%os.Getpagesize() != 0:
		return nil, fmt.Errorf("pager chunk size %d is not a multiple of the page size %d", chunk, page)
	case size == 0 || size%page != 0:
		return nil, fmt.Errorf("shared guest memory of %d bytes is not a whole number of %d-byte pages", size, page)
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

	chunks := (size + uint64(chunk) - 1) / uint64(chunk)
	return &SharedMemory{
		file:      file,
		size:      size,
		pager:     pager,
		chunkSize: uint64(chunk),
		state:     make([]atomic.Uint32, chunks),
		filling:   map[uint64]*chunkFill{},
	}, nil
}

// Size returns the guest RAM size in bytes.
func (s *SharedMemory) Size() uint64 { return s.size }

// Stats returns the counters of the backing and its resident size.
func (s *SharedMemory) Stats() SharedMemoryStats {
	stats := SharedMemoryStats{
		ChunksCopied: s.stats.copied.Load(),
		ChunksHoles:  s.stats.holes.Load(),
		BytesRead:    s.stats.bytes.Load(),
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(s.file.Fd()), &st); err == nil {
		// st_blocks is in 512-byte units whatever the file system's block size.
		stats.ResidentBytes = uint64(st.Blocks) * 512
	}
	return stats
}

// Close releases the memfd. Machines that still map it keep their pages
// but can no longer fault in new ones, so close it after them.
func (s *SharedMemory) Close() error {
	return s.file.Close()
}

// mapPrivate maps the whole memfd copy-on-write. MAP_NORESERVE: a guest
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
}

// populate makes chunk c present in the memfd, unless it is a hole.
// Concurrent callers for one chunk wait for the first, which reads it
// once. A failed read is not remembered, so a later fault tries again.
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
		return chunkResult{hole: fill.hole}, fill.err
	}
	fill := &chunkFill{done: make(chan struct{})}
	s.filling[c] = fill
	s.mu.Unlock()

	n, hole, err := s.readChunk(c)
	fill.hole, fill.err = hole, err

	s.mu.Lock()
	switch {
	case err != nil:
	case hole:
		s.state[c].Store(chunkHole)
	default:
		s.state[c].Store(chunkData)
	}
	delete(s.filling, c)
	s.mu.Unlock()
	close(fill.done)

	if err != nil {
		return chunkResult{}, err
	}
	return chunkResult{hole: hole, copied: !hole, bytesRead: n}, nil
}

// readChunk reads chunk c from the pager and writes it into the memfd. It
// returns the number of bytes the pager returned.
func (s *SharedMemory) readChunk(c uint64) (n uint64, hole bool, err error) {
	off := c * s.chunkSize
	length := min(s.chunkSize, s.size-off)
	data, hole, err := s.pager.ReadChunk(off)
	if err != nil {
		return 0, false, fmt.Errorf("page in shared guest RAM at offset %#x: %w", off, err)
	}
	if hole {
		s.stats.holes.Add(1)
		return 0, true, nil
	}
	if uint64(len(data)) > length {
		return 0, false, fmt.Errorf("pager returned %d bytes for the chunk at %#x, RAM has %d there", len(data), off, length)
	}
	n = uint64(len(data))

	// The whole chunk is written, padded with zeros: a page left out of the
	// memfd would fault as missing again on every access.
	if n < length {
		padded := make([]byte, length)
		copy(padded, data)
		data = padded
	}
	if _, err := s.file.WriteAt(data, int64(off)); err != nil {
		return 0, false, fmt.Errorf("write guest RAM chunk at %#x into the shared memfd: %w", off, err)
	}
	s.stats.copied.Add(1)
	s.stats.bytes.Add(n)
	return n, false, nil
}
