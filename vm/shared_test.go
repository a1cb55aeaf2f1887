package vm

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spore-vm/spore/vm/uffd"
)

// slicePager serves chunks of an in-memory image and counts the reads of
// each chunk. All-zero chunks are holes.
type slicePager struct {
	image []byte
	chunk int

	mu    sync.Mutex
	reads map[uint64]int
}

func (p *slicePager) ChunkSize() int { return p.chunk }

func (p *slicePager) ReadChunk(off uint64) ([]byte, bool, error) {
	p.mu.Lock()
	p.reads[off]++
	p.mu.Unlock()
	end := min(off+uint64(p.chunk), uint64(len(p.image)))
	data := p.image[off:end]
	if bytes.Count(data, []byte{0}) == len(data) {
		return nil, true, nil
	}
	return data, false, nil
}

// sharedChild is one private mapping of a SharedMemory with its own
// userfaultfd handler, as a restored machine has.
type sharedChild struct {
	ram  *guestRAM
	lazy *lazyMemory
}

func mapSharedChild(t *testing.T, shared *SharedMemory) *sharedChild {
	t.Helper()
	return mapSharedChildLogging(t, shared, slog.Default())
}

// mapSharedChildLogging maps a child whose fault handler logs to logger.
func mapSharedChildLogging(t *testing.T, shared *SharedMemory, logger *slog.Logger) *sharedChild {
	t.Helper()
	ram, err := newSharedGuestRAM(0, shared)
	if err != nil {
		t.Fatal(err)
	}
	// A failed handler closes its userfaultfd, as a stopped machine does,
	// so a reader blocked in a fault goes on and the test fails at once
	// instead of hanging.
	started := make(chan *lazyMemory, 1)
	lazy, err := startLazyMemory(ram, shared.pager, shared, logger, func(err error) {
		t.Errorf("fault handler: %v", err)
		(<-started).fd.Close()
	})
	started <- lazy
	if err != nil {
		ram.close()
		if strings.Contains(err.Error(), "not permitted") {
			t.Skipf("userfaultfd: %v", err)
		}
		t.Fatal(err)
	}
	c := &sharedChild{ram: ram, lazy: lazy}
	t.Cleanup(func() {
		c.lazy.close()
		c.ram.close()
	})
	return c
}

// readThroughKernel copies [off, off+length) of the child's RAM into a file
// with pwrite and reads it back. The kernel, not a Go thread, takes the
// userfaultfd faults, as KVM does for a guest.
func readThroughKernel(t *testing.T, c *sharedChild, off, length uint64) []byte {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "ram")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := unix.Pwrite(int(f.Fd()), c.ram.mem[off:off+length], 0)
	if err != nil || uint64(n) != length {
		t.Fatalf("pwrite of guest RAM [%#x, +%#x): %d bytes, %v", off, length, n, err)
	}
	out := make([]byte, length)
	if _, err := f.ReadAt(out, 0); err != nil {
		t.Fatal(err)
	}
	return out
}

// testImage is 4 chunks of 64 KiB and one 4 KiB chunk: data, a hole, data,
// a hole, and short data at the end.
func testImage() []byte {
	const chunk = 64 << 10
	image := make([]byte, 4*chunk+4096)
	for i := range chunk {
		image[i] = byte(i*7 + 1)
		image[2*chunk+i] = byte(i*13 + 5)
	}
	copy(image[4*chunk:], strings.Repeat("tail", 1024))
	return image
}

// newTestPager serves testImage in 64 KiB chunks.
func newTestPager() *slicePager {
	return &slicePager{image: testImage(), chunk: 64 << 10, reads: map[uint64]int{}}
}

// skipWithoutUserfaultfd skips tests that map children when this process
// cannot open a userfaultfd.
func skipWithoutUserfaultfd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(uffd.DevicePath); err != nil && os.Getuid() != 0 {
		t.Skipf("userfaultfd needs %s or root: %v", uffd.DevicePath, err)
	}
}

func newTestSharedMemory(t *testing.T) (*SharedMemory, *slicePager) {
	t.Helper()
	skipWithoutUserfaultfd(t)
	pager := newTestPager()
	shared, err := NewSharedMemory(uint64(len(pager.image)), pager)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.Close() })
	return shared, pager
}

func TestSharedMemoryChildrenShareCleanPages(t *testing.T) {
	shared, pager := newTestSharedMemory(t)
	a := mapSharedChild(t, shared)
	b := mapSharedChild(t, shared)
	size := uint64(len(pager.image))

	if got := readThroughKernel(t, a, 0, size); !bytes.Equal(got, pager.image) {
		t.Fatal("first child reads other bytes than the image")
	}
	if got := readThroughKernel(t, b, 0, size); !bytes.Equal(got, pager.image) {
		t.Fatal("second child reads other bytes than the image")
	}

	for off, n := range pager.reads {
		if n != 1 {
			t.Errorf("chunk at %#x read %d times from the pager, want once", off, n)
		}
	}
	stats := shared.Stats()
	if stats.ChunksCopied != 3 || stats.ChunksHoles != 2 {
		t.Errorf("backing copied %d chunks and found %d holes, want 3 and 2", stats.ChunksCopied, stats.ChunksHoles)
	}
	// The three data chunks are in the memfd; the holes allocated nothing.
	if want := uint64(2*64<<10 + 4096); stats.ResidentBytes != want {
		t.Errorf("memfd holds %d bytes, want %d (data chunks only)", stats.ResidentBytes, want)
	}
	// The second child maps the data chunks from the page cache without a
	// userfaultfd fault; only its holes fault, to map zero pages.
	if got := b.lazy.snapshotStats(); got.Faults != 2 || got.ChunksCopied != 0 || got.ChunksZeroed != 2 {
		t.Errorf("second child: %+v, want 2 faults, 0 chunks copied, 2 zeroed", got)
	}

	usage := smapsUsage(t, a)
	if usage.Shared == 0 || usage.PSS >= usage.RSS {
		t.Errorf("first child's mapping: %+v, want shared pages and PSS below RSS", usage)
	}
}

func TestSharedMemoryWritesStayPrivate(t *testing.T) {
	shared, pager := newTestSharedMemory(t)
	a := mapSharedChild(t, shared)
	b := mapSharedChild(t, shared)
	size := uint64(len(pager.image))

	// Host writes, as virtio DMA does: ensure first, then touch. Offset
	// 0x1000 is in the first chunk (data), 0x12000 in the second (a hole).
	for _, off := range []uint64{0x1000, 0x12000} {
		if err := a.lazy.ensure(off, 4096); err != nil {
			t.Fatal(err)
		}
		copy(a.ram.mem[off:], "written by a")
	}

	gotA := readThroughKernel(t, a, 0, size)
	gotB := readThroughKernel(t, b, 0, size)
	for _, off := range []uint64{0x1000, 0x12000} {
		if !bytes.HasPrefix(gotA[off:], []byte("written by a")) {
			t.Errorf("child a at %#x reads %q, want its own write", off, gotA[off:off+12])
		}
		if !bytes.Equal(gotB[off:off+4096], pager.image[off:off+4096]) {
			t.Errorf("child b at %#x reads %q, want the image", off, gotB[off:off+12])
		}
	}

	memfd := make([]byte, size)
	if _, err := shared.file.ReadAt(memfd, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(memfd, pager.image) {
		t.Error("a child's write reached the shared memfd")
	}
	if usage := smapsUsage(t, a); usage.Anonymous < 2*4096 {
		t.Errorf("child a has %d bytes of private copies, want at least two pages", usage.Anonymous)
	}
}

func TestSharedMemoryConcurrentFaults(t *testing.T) {
	shared, pager := newTestSharedMemory(t)
	size := uint64(len(pager.image))
	var children []*sharedChild
	for range 4 {
		children = append(children, mapSharedChild(t, shared))
	}

	var wg sync.WaitGroup
	results := make([][]byte, len(children)*2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = readThroughKernel(t, children[i%len(children)], 0, size)
		}()
	}
	wg.Wait()

	for i, got := range results {
		if !bytes.Equal(got, pager.image) {
			t.Errorf("reader %d reads other bytes than the image", i)
		}
	}
	for off, n := range pager.reads {
		if n != 1 {
			t.Errorf("chunk at %#x read %d times from the pager, want once", off, n)
		}
	}
}

func TestNewSharedMemoryRejectsBadSize(t *testing.T) {
	pager := &slicePager{chunk: 64 << 10}
	if _, err := NewSharedMemory(1000, pager); err == nil || !strings.Contains(err.Error(), "1000 bytes") {
		t.Errorf("size of 1000 bytes: error %v, want one naming the size", err)
	}
	pager.chunk = 1000
	if _, err := NewSharedMemory(64<<10, pager); err == nil || !strings.Contains(err.Error(), "chunk size 1000") {
		t.Errorf("chunk size of 1000 bytes: error %v, want one naming the chunk size", err)
	}
}

func smapsUsage(t *testing.T, c *sharedChild) MemoryUsage {
	t.Helper()
	f, err := os.Open(filepath.Join("/proc/self/smaps"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := uint64(c.ram.hostAddr())
	usage, err := parseSmapsRange(f, start, start+c.ram.size())
	if err != nil {
		t.Fatal(err)
	}
	return usage
}
