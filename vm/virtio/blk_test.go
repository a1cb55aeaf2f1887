package virtio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const testDiskSectors = 64

// testDisk creates a raw image of testDiskSectors sectors in which every
// byte of sector s has the value s+1, and opens it.
func testDisk(t *testing.T, readOnly bool) (*FileBacking, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, testDiskSectors*SectorSize)
	for s := 0; s < testDiskSectors; s++ {
		for i := 0; i < SectorSize; i++ {
			img[s*SectorSize+i] = byte(s + 1)
		}
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := OpenFileBacking(path, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, path
}

// blkGuest is a test guest with a probed block device.
type blkGuest struct {
	*testGuest
	q *guestQueue
}

func newBlkGuest(t *testing.T, cfg BlockConfig) *blkGuest {
	t.Helper()
	dev, err := NewBlock(cfg, nil)
	if err != nil {
		t.Fatalf("NewBlock: %v", err)
	}
	g := newTestGuest(t, dev)
	g.probe(DeviceIDBlock, ^uint64(0), 0)
	return &blkGuest{testGuest: g, q: g.queues[0]}
}

func (g *blkGuest) header(reqType uint32, sector uint64) uint64 {
	addr := g.alloc(blkHeaderSize, 8)
	var h [blkHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], reqType)
	binary.LittleEndian.PutUint64(h[8:], sector)
	g.writeMem(addr, h[:])
	return addr
}

// request submits a request as Linux's virtio_blk lays it out (header,
// data, status in separate descriptors), runs it and returns the status
// byte and the used length.
func (g *blkGuest) request(reqType uint32, sector uint64, data gbuf) (uint8, uint32) {
	g.t.Helper()
	hdr := g.header(reqType, sector)
	status := g.alloc(1, 1)
	g.writeMem(status, []byte{0xff})
	bufs := []gbuf{{addr: hdr, len: blkHeaderSize}}
	if data.len > 0 {
		bufs = append(bufs, data)
	}
	bufs = append(bufs, gbuf{addr: status, len: 1, write: true})
	head := g.q.submit(bufs...)
	g.q.kick()
	return g.finish(head, status)
}

func (g *blkGuest) finish(head uint16, status uint64) (uint8, uint32) {
	g.t.Helper()
	used := g.q.takeUsed()
	if len(used) != 1 || used[0].id != head {
		g.t.Fatalf("used ring = %+v, want one entry with head %d", used, head)
	}
	return g.readMem(status, 1)[0], used[0].len
}

func TestBlockRead(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk})
	data := g.alloc(2*SectorSize, 8)

	st, n := g.request(blkTypeIn, 2, gbuf{addr: data, len: 2 * SectorSize, write: true})
	if st != blkStatusOK {
		t.Fatalf("status = %d, want OK", st)
	}
	if n != 2*SectorSize+1 {
		t.Errorf("used length = %d, want %d", n, 2*SectorSize+1)
	}
	got := g.readMem(data, 2*SectorSize)
	want := append(bytes.Repeat([]byte{3}, SectorSize), bytes.Repeat([]byte{4}, SectorSize)...)
	if !bytes.Equal(got, want) {
		t.Errorf("read data does not match sectors 2 and 3")
	}
	if st := g.ackInterrupt(); st != InterruptUsedBuffer {
		t.Errorf("InterruptStatus = %#x, want %#x", st, InterruptUsedBuffer)
	}
}

func TestBlockReadAnyLayout(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk})

	// The data spans two descriptors and the status byte shares the
	// second one, through an indirect table.
	hdr := g.header(blkTypeIn, 7)
	a := g.alloc(700, 8)
	b := g.alloc(325, 8)
	head := g.q.submitIndirect(
		gbuf{addr: hdr, len: blkHeaderSize},
		gbuf{addr: a, len: 700, write: true},
		gbuf{addr: b, len: 325, write: true},
	)
	g.q.kick()
	st, n := g.finish(head, b+324)
	if st != blkStatusOK || n != 1025 {
		t.Fatalf("status %d, used length %d; want OK and 1025", st, n)
	}
	got := append(g.readMem(a, 700), g.readMem(b, 324)...)
	want := append(bytes.Repeat([]byte{8}, SectorSize), bytes.Repeat([]byte{9}, SectorSize)...)
	if !bytes.Equal(got, want) {
		t.Errorf("data split across descriptors does not match sectors 7 and 8")
	}
}

func TestBlockWrite(t *testing.T) {
	disk, path := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk})
	data := g.alloc(SectorSize, 8)
	g.writeMem(data, bytes.Repeat([]byte{0xee}, SectorSize))

	st, n := g.request(blkTypeOut, 5, gbuf{addr: data, len: SectorSize})
	if st != blkStatusOK || n != 1 {
		t.Fatalf("status %d, used length %d; want OK and 1", st, n)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img[5*SectorSize:6*SectorSize], bytes.Repeat([]byte{0xee}, SectorSize)) {
		t.Errorf("sector 5 of the image was not written")
	}
	if !bytes.Equal(img[6*SectorSize:7*SectorSize], bytes.Repeat([]byte{7}, SectorSize)) {
		t.Errorf("sector 6 of the image changed")
	}
}

// countingBacking wraps a backing, counts flushes and can fail I/O.
type countingBacking struct {
	BlockBacking
	mu      sync.Mutex
	flushes int
	fail    bool
}

func (c *countingBacking) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushes++
	if c.fail {
		return errors.New("flush failed")
	}
	return c.BlockBacking.Flush()
}

func (c *countingBacking) ReadAt(p []byte, off int64) (int, error) {
	if c.fail {
		return 0, errors.New("read failed")
	}
	return c.BlockBacking.ReadAt(p, off)
}

func TestBlockFlush(t *testing.T) {
	disk, _ := testDisk(t, false)
	backing := &countingBacking{BlockBacking: disk}
	g := newBlkGuest(t, BlockConfig{Backing: backing})

	st, n := g.request(blkTypeFlush, 0, gbuf{})
	if st != blkStatusOK || n != 1 {
		t.Fatalf("status %d, used length %d; want OK and 1", st, n)
	}
	if backing.flushes != 1 {
		t.Errorf("backing flushed %d times, want 1", backing.flushes)
	}

	backing.fail = true
	if st, _ := g.request(blkTypeFlush, 0, gbuf{}); st != blkStatusIOErr {
		t.Errorf("status of a failed flush = %d, want IOERR", st)
	}
}

func TestBlockIOErrorReported(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: &countingBacking{BlockBacking: disk, fail: true}})
	st, n := g.request(blkTypeIn, 0, gbuf{addr: g.alloc(SectorSize, 8), len: SectorSize, write: true})
	if st != blkStatusIOErr || n != 0 {
		t.Errorf("status %d, used length %d; want IOERR and 0", st, n)
	}
}

func TestBlockReadOnlyRejectsWrite(t *testing.T) {
	disk, path := testDisk(t, true)
	g := newBlkGuest(t, BlockConfig{Backing: disk, ReadOnly: true})
	if g.negotiatedFeatures()&BlockFeatureRO == 0 {
		t.Fatalf("VIRTIO_BLK_F_RO was not offered")
	}
	data := g.alloc(SectorSize, 8)
	g.writeMem(data, bytes.Repeat([]byte{0xee}, SectorSize))

	if st, _ := g.request(blkTypeOut, 0, gbuf{addr: data, len: SectorSize}); st != blkStatusIOErr {
		t.Errorf("status of a write to a read-only disk = %d, want IOERR", st)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if img[0] != 1 {
		t.Errorf("read-only image was modified")
	}
	if st, _ := g.request(blkTypeIn, 0, gbuf{addr: data, len: SectorSize, write: true}); st != blkStatusOK {
		t.Errorf("status of a read from a read-only disk = %d, want OK", st)
	}
}

func TestBlockRejectsBadRanges(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk})
	data := g.alloc(4*SectorSize, 8)
	cases := []struct {
		name   string
		sector uint64
		len    uint32
	}{
		{"at capacity", testDiskSectors, SectorSize},
		{"straddles end", testDiskSectors - 1, 2 * SectorSize},
		{"huge sector", 1 << 62, SectorSize},
		{"sector overflows bytes", ^uint64(0), SectorSize},
		{"partial sector", 0, SectorSize + 1},
	}
	for _, c := range cases {
		st, n := g.request(blkTypeIn, c.sector, gbuf{addr: data, len: c.len, write: true})
		if st != blkStatusIOErr {
			t.Errorf("%s: status = %d, want IOERR", c.name, st)
		}
		if n != 0 {
			t.Errorf("%s: used length = %d, want 0", c.name, n)
		}
	}
	if st, _ := g.request(blkTypeIn, testDiskSectors-1, gbuf{addr: data, len: SectorSize, write: true}); st != blkStatusOK {
		t.Errorf("read of the last sector: status = %d, want OK", st)
	}
}

func TestBlockGetID(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk, ID: "spore-root"})
	id := g.alloc(BlockIDSize, 8)
	g.writeMem(id, bytes.Repeat([]byte{0xff}, BlockIDSize))

	st, n := g.request(blkTypeGetID, 0, gbuf{addr: id, len: BlockIDSize, write: true})
	if st != blkStatusOK || n != BlockIDSize+1 {
		t.Fatalf("status %d, used length %d; want OK and %d", st, n, BlockIDSize+1)
	}
	want := append([]byte("spore-root"), make([]byte, BlockIDSize-len("spore-root"))...)
	if got := g.readMem(id, BlockIDSize); !bytes.Equal(got, want) {
		t.Errorf("GET_ID = %q, want %q", got, want)
	}
}

func TestBlockUnsupportedType(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk})
	if st, _ := g.request(11, 0, gbuf{}); st != blkStatusUnsupp { // VIRTIO_BLK_T_DISCARD
		t.Errorf("status of a discard = %d, want UNSUPP", st)
	}
}

func TestBlockMalformedRequestDropped(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk})

	// A header shorter than 16 bytes and no status byte.
	head := g.q.submit(gbuf{addr: g.alloc(8, 8), len: 8})
	g.q.kick()
	used := g.q.takeUsed()
	if len(used) != 1 || used[0].id != head || used[0].len != 0 {
		t.Fatalf("used ring = %+v, want head %d returned with length 0", used, head)
	}
	if st := g.status(); st&StatusDeviceNeedsReset != 0 {
		t.Errorf("status = %#x: a malformed request must not need a reset", st)
	}
}

func TestBlockConfigSpace(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk})

	// Linux reads the 64-bit capacity as two 32-bit reads.
	capacity := uint64(g.read32(regConfig)) | uint64(g.read32(regConfig+4))<<32
	if capacity != testDiskSectors {
		t.Errorf("capacity = %d, want %d", capacity, testDiskSectors)
	}
	if segMax := g.read32(regConfig + 12); segMax != blkSegMax {
		t.Errorf("seg_max = %d, want %d", segMax, blkSegMax)
	}
	capacityByte := []byte{0xff}
	g.tr.HandleMMIO(regConfig, capacityByte, false)
	if capacityByte[0] != testDiskSectors {
		t.Errorf("byte read of capacity = %d, want %d", capacityByte[0], testDiskSectors)
	}
	if beyond := g.read32(regConfig + 0xf0); beyond != 0 {
		t.Errorf("read beyond the configuration = %#x, want 0", beyond)
	}
}

func TestNewBlockRejectsBadConfig(t *testing.T) {
	disk, _ := testDisk(t, false)
	if _, err := NewBlock(BlockConfig{Backing: disk, ID: strings.Repeat("x", 21)}, nil); err == nil {
		t.Errorf("NewBlock accepted a 21-byte ID")
	}
	if _, err := NewBlock(BlockConfig{}, nil); err == nil {
		t.Errorf("NewBlock accepted a nil backing")
	}
	path := filepath.Join(t.TempDir(), "odd.img")
	if err := os.WriteFile(path, make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	odd, err := OpenFileBacking(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer odd.Close()
	if _, err := NewBlock(BlockConfig{Backing: odd}, nil); err == nil {
		t.Errorf("NewBlock accepted a 1000-byte image")
	}
	if _, err := OpenFileBacking(t.TempDir(), true); err == nil {
		t.Errorf("OpenFileBacking accepted a directory")
	}
}

func TestBlockReadMarksPagesDirty(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk})
	hdr := g.header(blkTypeIn, 0)
	data := g.alloc(2*PageSize, PageSize)
	status := g.alloc(1, PageSize)
	g.q.submit(gbuf{addr: hdr, len: blkHeaderSize}, gbuf{addr: data, len: 2 * PageSize, write: true}, gbuf{addr: status, len: 1, write: true})
	g.mem.TakeDirtyPages() // forget the test guest's own writes

	g.q.kick()
	got := g.mem.TakeDirtyPages()
	want := []uint64{g.q.used, data, data + PageSize, status}
	if len(got) != len(want) {
		t.Fatalf("dirty pages = %#x, want %#x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("dirty page %d = %#x, want %#x", i, got[i], want[i])
		}
	}
}
