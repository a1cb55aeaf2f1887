package virtio

import (
	"encoding/binary"
	"sync"
	"testing"
)

// This file is the test guest: a driver that programs a Transport through
// HandleMMIO in the order Linux's virtio_mmio and virtio core drivers use,
// and lays out split virtqueues in a byte-slice guest memory.

const (
	testRAMBase = 0x4000_0000
	testRAMSize = 4 << 20
)

// testIRQ records the interrupt line driven by a Transport.
type testIRQ struct {
	mu     sync.Mutex
	level  bool
	raises int
}

func (i *testIRQ) SetLevel(asserted bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if asserted {
		i.raises++
	}
	i.level = asserted
}

func (i *testIRQ) snapshot() (bool, int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.level, i.raises
}

func newTestMemory(t testing.TB) *Memory {
	t.Helper()
	mem, err := NewMemory(testRAMBase, make([]byte, testRAMSize))
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	return mem
}

type testGuest struct {
	t      testing.TB
	mem    *Memory
	tr     *Transport
	irq    *testIRQ
	next   uint64 // bump allocator for guest memory
	queues []*guestQueue
}

// newTestGuest creates a transport for dev over fresh guest memory.
func newTestGuest(t testing.TB, dev Device) *testGuest {
	t.Helper()
	mem := newTestMemory(t)
	return newTestGuestOn(t, dev, mem, testRAMBase+PageSize)
}

func newTestGuestOn(t testing.TB, dev Device, mem *Memory, next uint64) *testGuest {
	t.Helper()
	irq := &testIRQ{}
	tr, err := NewTransport(dev, mem, irq, nil)
	if err != nil {
		t.Fatalf("NewTransport: %v", err)
	}
	return &testGuest{t: t, mem: mem, tr: tr, irq: irq, next: next}
}

func (g *testGuest) read32(off uint64) uint32 {
	var b [4]byte
	g.tr.HandleMMIO(off, b[:], false)
	return binary.LittleEndian.Uint32(b[:])
}

func (g *testGuest) write32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	g.tr.HandleMMIO(off, b[:], true)
}

func (g *testGuest) status() uint32 { return g.read32(regStatus) }

func (g *testGuest) addStatus(bit uint32) { g.write32(regStatus, g.status()|bit) }

// alloc returns n bytes of zeroed guest memory aligned to align.
func (g *testGuest) alloc(n, align uint64) uint64 {
	g.next = (g.next + align - 1) &^ (align - 1)
	addr := g.next
	g.next += n
	if g.next > testRAMBase+testRAMSize {
		g.t.Fatalf("test guest is out of memory")
	}
	if err := g.mem.Write(addr, make([]byte, n)); err != nil {
		g.t.Fatalf("zeroing guest memory: %v", err)
	}
	return addr
}

// negotiate runs the virtio_mmio probe and the feature negotiation of the
// virtio core, accepting the offered features in want. It returns the
// status after FEATURES_OK was written.
func (g *testGuest) negotiate(wantID uint32, want uint64) uint32 {
	g.t.Helper()
	if got := g.read32(regMagicValue); got != mmioMagic {
		g.t.Fatalf("MagicValue = %#x, want %#x", got, mmioMagic)
	}
	if got := g.read32(regVersion); got != 2 {
		g.t.Fatalf("Version = %d, want 2", got)
	}
	if got := g.read32(regDeviceID); got != wantID {
		g.t.Fatalf("DeviceID = %d, want %d", got, wantID)
	}
	if got := g.read32(regVendorID); got != VendorID {
		g.t.Fatalf("VendorID = %#x, want %#x", got, VendorID)
	}

	g.write32(regStatus, 0)
	g.addStatus(StatusAcknowledge)
	g.addStatus(StatusDriver)

	g.write32(regDeviceFeaturesSel, 1)
	offered := uint64(g.read32(regDeviceFeatures)) << 32
	g.write32(regDeviceFeaturesSel, 0)
	offered |= uint64(g.read32(regDeviceFeatures))
	accepted := offered & want

	g.write32(regDriverFeaturesSel, 1)
	g.write32(regDriverFeatures, uint32(accepted>>32))
	g.write32(regDriverFeaturesSel, 0)
	g.write32(regDriverFeatures, uint32(accepted))
	g.addStatus(StatusFeaturesOK)
	return g.status()
}

// probe brings the device up like Linux: negotiation, queue setup with
// the largest allowed sizes (capped at maxSize when non-zero), DRIVER_OK.
func (g *testGuest) probe(wantID uint32, want uint64, maxSize uint16) {
	g.t.Helper()
	if st := g.negotiate(wantID, want); st&StatusFeaturesOK == 0 {
		g.t.Fatalf("device did not accept FEATURES_OK, status %#x", st)
	}
	g.write32(regDriverFeaturesSel, 0)
	features := g.negotiatedFeatures()
	for i := 0; ; i++ {
		g.write32(regQueueSel, uint32(i))
		if g.read32(regQueueReady) != 0 {
			g.t.Fatalf("queue %d is ready before setup", i)
		}
		n := uint16(g.read32(regQueueNumMax))
		if n == 0 {
			break
		}
		if maxSize != 0 && n > maxSize {
			n = maxSize
		}
		g.queues = append(g.queues, g.setupQueue(i, n, features&FeatureEventIdx != 0))
	}
	g.addStatus(StatusDriverOK)
	if st := g.status(); st&StatusDeviceNeedsReset != 0 || st&StatusDriverOK == 0 {
		g.t.Fatalf("status after DRIVER_OK = %#x", st)
	}
}

func (g *testGuest) negotiatedFeatures() uint64 {
	g.tr.mu.Lock()
	defer g.tr.mu.Unlock()
	return g.tr.driverFeatures
}

// setupQueue lays out a split virtqueue like Linux's vring_create_virtqueue
// (descriptor table, available ring, used ring on the next page) and
// programs it into the selected queue.
func (g *testGuest) setupQueue(index int, size uint16, eventIdx bool) *guestQueue {
	n := uint64(size)
	q := &guestQueue{g: g, index: index, size: size, eventIdx: eventIdx, chains: map[uint16][]uint16{}}
	q.desc = g.alloc(16*n, PageSize)
	q.avail = g.alloc(6+2*n, 2)
	q.used = g.alloc(6+8*n, PageSize)
	for i := range size {
		q.free = append(q.free, i)
	}
	g.write32(regQueueNum, uint32(size))
	g.write32(regQueueDescLow, uint32(q.desc))
	g.write32(regQueueDescHigh, uint32(q.desc>>32))
	g.write32(regQueueDriverLow, uint32(q.avail))
	g.write32(regQueueDriverHigh, uint32(q.avail>>32))
	g.write32(regQueueDeviceLow, uint32(q.used))
	g.write32(regQueueDeviceHigh, uint32(q.used>>32))
	g.write32(regQueueReady, 1)
	return q
}

// ackInterrupt does what vm_interrupt does: read InterruptStatus and write
// the value to InterruptACK. It returns the status.
func (g *testGuest) ackInterrupt() uint32 {
	st := g.read32(regInterruptStatus)
	g.write32(regInterruptACK, st)
	return st
}

type guestQueue struct {
	g                 *testGuest
	index             int
	size              uint16
	desc, avail, used uint64
	eventIdx          bool
	free              []uint16
	chains            map[uint16][]uint16 // head -> descriptors, for freeing
	availIdx          uint16
	lastUsed          uint16
}

// gbuf is one buffer of a request: guest address, length, device-writable.
type gbuf struct {
	addr  uint64
	len   uint32
	write bool
}

func (q *guestQueue) writeDesc(table uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	if err := q.g.mem.Write(table+16*uint64(i), b[:]); err != nil {
		q.g.t.Fatalf("writing descriptor: %v", err)
	}
}

// submit builds a direct chain from bufs and makes it available. It
// returns the head index.
func (q *guestQueue) submit(bufs ...gbuf) uint16 {
	q.g.t.Helper()
	if len(bufs) > len(q.free) {
		q.g.t.Fatalf("queue %d has %d free descriptors, need %d", q.index, len(q.free), len(bufs))
	}
	idx := q.free[:len(bufs)]
	q.free = q.free[len(bufs):]
	for i, b := range bufs {
		var flags, next uint16
		if b.write {
			flags |= descFlagWrite
		}
		if i+1 < len(bufs) {
			flags |= descFlagNext
			next = idx[i+1]
		}
		q.writeDesc(q.desc, idx[i], b.addr, b.len, flags, next)
	}
	q.chains[idx[0]] = append([]uint16(nil), idx...)
	q.publish(idx[0])
	return idx[0]
}

// submitIndirect puts bufs in an indirect table referenced by one
// descriptor and makes it available.
func (q *guestQueue) submitIndirect(bufs ...gbuf) uint16 {
	table := q.g.alloc(16*uint64(len(bufs)), 16)
	for i, b := range bufs {
		var flags uint16
		if b.write {
			flags |= descFlagWrite
		}
		if i+1 < len(bufs) {
			flags |= descFlagNext
		}
		q.writeDesc(table, uint16(i), b.addr, b.len, flags, uint16(i+1))
	}
	head := q.free[0]
	q.free = q.free[1:]
	q.writeDesc(q.desc, head, table, uint32(16*len(bufs)), descFlagIndirect, 0)
	q.chains[head] = []uint16{head}
	q.publish(head)
	return head
}

// publish adds head to the available ring and then increments the index.
func (q *guestQueue) publish(head uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], head)
	if err := q.g.mem.Write(q.avail+4+2*uint64(q.availIdx%q.size), b[:]); err != nil {
		q.g.t.Fatalf("writing available ring: %v", err)
	}
	q.availIdx++
	if err := q.g.mem.StoreUint16(q.avail+2, q.availIdx); err != nil {
		q.g.t.Fatalf("writing available index: %v", err)
	}
}

func (q *guestQueue) kick() { q.g.write32(regQueueNotify, uint32(q.index)) }

type usedElem struct {
	id  uint16
	len uint32
}

// takeUsed returns the chains the device returned since the last call and
// frees their descriptors.
func (q *guestQueue) takeUsed() []usedElem {
	q.g.t.Helper()
	idx, err := q.g.mem.LoadUint16(q.used + 2)
	if err != nil {
		q.g.t.Fatalf("reading used index: %v", err)
	}
	var out []usedElem
	for ; q.lastUsed != idx; q.lastUsed++ {
		var b [8]byte
		if err := q.g.mem.Read(q.used+4+8*uint64(q.lastUsed%q.size), b[:]); err != nil {
			q.g.t.Fatalf("reading used ring: %v", err)
		}
		e := usedElem{id: uint16(binary.LittleEndian.Uint32(b[0:])), len: binary.LittleEndian.Uint32(b[4:])}
		if descs, ok := q.chains[e.id]; ok {
			q.free = append(q.free, descs...)
			delete(q.chains, e.id)
		} else {
			q.g.t.Errorf("queue %d: device returned head %d, which is not in flight", q.index, e.id)
		}
		out = append(out, e)
	}
	return out
}

// setUsedEvent writes used_event (VIRTIO_F_EVENT_IDX).
func (q *guestQueue) setUsedEvent(v uint16) {
	if err := q.g.mem.StoreUint16(q.avail+4+2*uint64(q.size), v); err != nil {
		q.g.t.Fatalf("writing used_event: %v", err)
	}
}

func (q *guestQueue) availEvent() uint16 {
	v, err := q.g.mem.LoadUint16(q.used + 4 + 8*uint64(q.size))
	if err != nil {
		q.g.t.Fatalf("reading avail_event: %v", err)
	}
	return v
}

func (g *testGuest) readMem(addr uint64, n int) []byte {
	p := make([]byte, n)
	if err := g.mem.Read(addr, p); err != nil {
		g.t.Fatalf("reading guest memory: %v", err)
	}
	return p
}

func (g *testGuest) writeMem(addr uint64, p []byte) {
	if err := g.mem.Write(addr, p); err != nil {
		g.t.Fatalf("writing guest memory: %v", err)
	}
}
