package virtio

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestEntropyFillsBuffer(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	q := g.queues[0]

	buf := g.alloc(64, 8)
	head := q.submit(gbuf{addr: buf, len: 64, write: true})
	q.kick()

	used := q.takeUsed()
	if len(used) != 1 || used[0].id != head || used[0].len != 64 {
		t.Fatalf("used ring = %+v, want one entry with head %d and len 64", used, head)
	}
	if got := g.readMem(buf, 64); bytes.Equal(got, make([]byte, 64)) {
		t.Errorf("buffer is still all zero after the fill")
	}
	if st := g.ackInterrupt(); st != InterruptUsedBuffer {
		t.Errorf("InterruptStatus = %#x, want %#x", st, InterruptUsedBuffer)
	}
	if level, _ := g.irq.snapshot(); level {
		t.Errorf("interrupt line still asserted after InterruptACK")
	}
}

func TestEntropyUsesSource(t *testing.T) {
	src := bytes.NewReader(bytes.Repeat([]byte{0xab}, 100))
	g := newTestGuest(t, NewEntropy(src, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1|FeatureIndirectDesc, 0)
	q := g.queues[0]

	a, b := g.alloc(16, 8), g.alloc(16, 8)
	q.submitIndirect(gbuf{addr: a, len: 16, write: true}, gbuf{addr: b, len: 16, write: true})
	q.kick()

	used := q.takeUsed()
	if len(used) != 1 || used[0].len != 32 {
		t.Fatalf("used ring = %+v, want one entry with len 32", used)
	}
	want := bytes.Repeat([]byte{0xab}, 16)
	if got := g.readMem(a, 16); !bytes.Equal(got, want) {
		t.Errorf("first buffer = %x, want %x", got, want)
	}
	if got := g.readMem(b, 16); !bytes.Equal(got, want) {
		t.Errorf("second buffer = %x, want %x", got, want)
	}
}

type failingReader struct{}

func (failingReader) Read(p []byte) (int, error) { return 0, errors.New("entropy source failed") }

func TestEntropySourceErrorReturnsEmpty(t *testing.T) {
	g := newTestGuest(t, NewEntropy(failingReader{}, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	q := g.queues[0]
	q.submit(gbuf{addr: g.alloc(32, 8), len: 32, write: true})
	q.kick()
	used := q.takeUsed()
	if len(used) != 1 || used[0].len != 0 {
		t.Fatalf("used ring = %+v, want one entry with len 0", used)
	}
}

func TestEntropyCapsLargeRequest(t *testing.T) {
	g := newTestGuest(t, NewEntropy(io.LimitReader(bytes.NewReader(make([]byte, 1<<20)), 1<<20), nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	q := g.queues[0]
	q.submit(gbuf{addr: g.alloc(rngMaxFill*2, 8), len: rngMaxFill * 2, write: true})
	q.kick()
	used := q.takeUsed()
	if len(used) != 1 || used[0].len != rngMaxFill {
		t.Fatalf("used ring = %+v, want one entry with len %d", used, rngMaxFill)
	}
}

func TestEntropyRejectsReadableBuffer(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	q := g.queues[0]
	buf := g.alloc(32, 8)
	q.submit(gbuf{addr: buf, len: 16}, gbuf{addr: buf + 16, len: 16, write: true})
	q.kick()
	used := q.takeUsed()
	if len(used) != 1 || used[0].len != 0 {
		t.Fatalf("used ring = %+v, want one entry with len 0", used)
	}
	if got := g.readMem(buf+16, 16); !bytes.Equal(got, make([]byte, 16)) {
		t.Errorf("writable buffer of a rejected request was written: %x", got)
	}
}

func TestEntropyEventIdxSuppression(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1|FeatureEventIdx, 0)
	q := g.queues[0]
	if !q.eventIdx {
		t.Fatalf("VIRTIO_F_EVENT_IDX was not negotiated")
	}

	// Ask for an interrupt only after the third used entry (used_event 2).
	q.setUsedEvent(2)
	for i := 0; i < 2; i++ {
		q.submit(gbuf{addr: g.alloc(8, 8), len: 8, write: true})
		q.kick()
	}
	if _, raises := g.irq.snapshot(); raises != 0 {
		t.Fatalf("interrupt raised %d times before used_event was reached", raises)
	}
	q.submit(gbuf{addr: g.alloc(8, 8), len: 8, write: true})
	q.kick()
	if _, raises := g.irq.snapshot(); raises != 1 {
		t.Fatalf("interrupt raised %d times after used_event was reached, want 1", raises)
	}
	if got := len(q.takeUsed()); got != 3 {
		t.Fatalf("used entries = %d, want 3", got)
	}
	if got := q.availEvent(); got != 3 {
		t.Errorf("avail_event = %d, want 3 (the next available index)", got)
	}
}

func TestEntropyNoInterruptFlag(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	q := g.queues[0]
	if err := g.mem.StoreUint16(q.avail, availFlagNoInterrupt); err != nil {
		t.Fatal(err)
	}
	q.submit(gbuf{addr: g.alloc(8, 8), len: 8, write: true})
	q.kick()
	if _, raises := g.irq.snapshot(); raises != 0 {
		t.Errorf("interrupt raised %d times with VIRTQ_AVAIL_F_NO_INTERRUPT set", raises)
	}
	if got := len(q.takeUsed()); got != 1 {
		t.Errorf("used entries = %d, want 1", got)
	}
}
