package virtio

import (
	"errors"
	"testing"
)

// walkerFixture is a descriptor table of a queue of size 8 in test memory.
type walkerFixture struct {
	t      *testing.T
	mem    *Memory
	q      *guestQueue // used for writeDesc only
	table  uint64
	walker *chainWalker
}

func newWalkerFixture(t *testing.T, indirect bool) *walkerFixture {
	mem := newTestMemory(t)
	g := &testGuest{t: t, mem: mem}
	table := uint64(testRAMBase + PageSize)
	return &walkerFixture{
		t: t, mem: mem, q: &guestQueue{g: g}, table: table,
		walker: newChainWalker(mem, 0, table, 8, indirect),
	}
}

func (f *walkerFixture) desc(i uint16, addr uint64, length uint32, flags, next uint16) {
	f.q.writeDesc(f.table, i, addr, length, flags, next)
}

func TestChainWalkerValidChains(t *testing.T) {
	f := newWalkerFixture(t, true)
	buf := uint64(testRAMBase + 0x10000)
	f.desc(0, buf, 16, descFlagNext, 3)
	f.desc(3, buf+16, 512, descFlagNext|descFlagWrite, 5)
	f.desc(5, buf+528, 1, descFlagWrite, 0)

	c, err := f.walker.walk(0)
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	if len(c.Readable) != 1 || len(c.Writable) != 2 {
		t.Fatalf("chain has %d readable and %d writable buffers, want 1 and 2", len(c.Readable), len(c.Writable))
	}
	if c.ReadableLen() != 16 || c.WritableLen() != 513 {
		t.Errorf("lengths = %d readable, %d writable; want 16 and 513", c.ReadableLen(), c.WritableLen())
	}

	// A direct descriptor followed by an indirect table is valid too.
	table := uint64(testRAMBase + 0x20000)
	f.q.writeDesc(table, 0, buf, 8, descFlagNext, 1)
	f.q.writeDesc(table, 1, buf+8, 8, descFlagWrite, 0)
	f.desc(1, buf, 4, descFlagNext, 2)
	f.desc(2, table, 32, descFlagIndirect, 0)
	c, err = f.walker.walk(1)
	if err != nil {
		t.Fatalf("walk with indirect table: %v", err)
	}
	if len(c.Readable) != 2 || len(c.Writable) != 1 {
		t.Errorf("chain has %d readable and %d writable buffers, want 2 and 1", len(c.Readable), len(c.Writable))
	}
}

func TestChainWalkerRejectsMalformed(t *testing.T) {
	buf := uint64(testRAMBase + 0x10000)
	table := uint64(testRAMBase + 0x20000)
	cases := []struct {
		name     string
		indirect bool // VIRTIO_F_INDIRECT_DESC negotiated
		setup    func(f *walkerFixture)
		head     uint16
		want     error
	}{
		{"self loop", false, func(f *walkerFixture) {
			f.desc(0, buf, 8, descFlagNext, 0)
		}, 0, ErrDescriptorLoop},
		{"two-entry loop", false, func(f *walkerFixture) {
			f.desc(0, buf, 8, descFlagNext, 1)
			f.desc(1, buf, 8, descFlagNext, 0)
		}, 0, ErrDescriptorLoop},
		{"loop in indirect table", true, func(f *walkerFixture) {
			f.q.writeDesc(table, 0, buf, 8, descFlagNext, 1)
			f.q.writeDesc(table, 1, buf, 8, descFlagNext, 0)
			f.desc(0, table, 32, descFlagIndirect, 0)
		}, 0, ErrDescriptorLoop},
		{"head out of range", false, func(f *walkerFixture) {}, 8, ErrDescriptorIndex},
		{"next out of range", false, func(f *walkerFixture) {
			f.desc(0, buf, 8, descFlagNext, 8)
		}, 0, ErrDescriptorIndex},
		{"next out of indirect table", true, func(f *walkerFixture) {
			f.q.writeDesc(table, 0, buf, 8, descFlagNext, 2)
			f.desc(0, table, 32, descFlagIndirect, 0)
		}, 0, ErrDescriptorIndex},
		{"too long with indirect", true, func(f *walkerFixture) {
			for i := uint16(0); i < 8; i++ {
				f.q.writeDesc(table, i, buf, 8, descFlagNext, i+1)
			}
			f.q.writeDesc(table, 7, buf, 8, 0, 0)
			f.desc(0, buf, 8, descFlagNext, 1)
			f.desc(1, table, 8*16, descFlagIndirect, 0)
		}, 0, ErrChainTooLong},
		{"readable after writable", false, func(f *walkerFixture) {
			f.desc(0, buf, 8, descFlagNext|descFlagWrite, 1)
			f.desc(1, buf, 8, 0, 0)
		}, 0, ErrDescriptorOrder},
		{"buffer outside RAM", false, func(f *walkerFixture) {
			f.desc(0, 0x1000, 8, 0, 0)
		}, 0, ErrBufferOutsideRAM},
		{"buffer wraps address space", false, func(f *walkerFixture) {
			f.desc(0, ^uint64(0)-3, 8, 0, 0)
		}, 0, ErrBufferOutsideRAM},
		{"buffer past end of RAM", false, func(f *walkerFixture) {
			f.desc(0, testRAMBase+testRAMSize-4, 8, 0, 0)
		}, 0, ErrBufferOutsideRAM},
		{"indirect not negotiated", false, func(f *walkerFixture) {
			f.desc(0, table, 16, descFlagIndirect, 0)
		}, 0, ErrIndirectDescriptor},
		{"nested indirect", true, func(f *walkerFixture) {
			f.q.writeDesc(table, 0, table, 16, descFlagIndirect, 0)
			f.desc(0, table, 16, descFlagIndirect, 0)
		}, 0, ErrIndirectDescriptor},
		{"indirect with next", true, func(f *walkerFixture) {
			f.desc(0, table, 16, descFlagIndirect|descFlagNext, 1)
		}, 0, ErrIndirectDescriptor},
		{"indirect length not multiple of 16", true, func(f *walkerFixture) {
			f.desc(0, table, 24, descFlagIndirect, 0)
		}, 0, ErrIndirectDescriptor},
		{"indirect length zero", true, func(f *walkerFixture) {
			f.desc(0, table, 0, descFlagIndirect, 0)
		}, 0, ErrIndirectDescriptor},
		{"indirect table larger than queue", true, func(f *walkerFixture) {
			f.desc(0, table, 16*9, descFlagIndirect, 0)
		}, 0, ErrIndirectDescriptor},
		{"indirect table outside RAM", true, func(f *walkerFixture) {
			f.desc(0, 0x1000, 16, descFlagIndirect, 0)
		}, 0, ErrIndirectDescriptor},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newWalkerFixture(t, c.indirect)
			c.setup(f)
			_, err := f.walker.walk(c.head)
			if !errors.Is(err, c.want) {
				t.Fatalf("walk = %v, want %v", err, c.want)
			}
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Head != c.head {
				t.Errorf("error %v is not a *ChainError for head %d", err, c.head)
			}
		})
	}
}

// TestMalformedChainNeedsReset sends malformed chains through the whole
// transport and checks that the device reports DEVICE_NEEDS_RESET, raises
// a configuration change interrupt, stops using the queue and works again
// after a driver reset.
func TestMalformedChainNeedsReset(t *testing.T) {
	cases := []struct {
		name  string
		build func(q *guestQueue, buf uint64)
	}{
		{"loop", func(q *guestQueue, buf uint64) {
			q.writeDesc(q.desc, 0, buf, 8, descFlagNext|descFlagWrite, 1)
			q.writeDesc(q.desc, 1, buf, 8, descFlagNext|descFlagWrite, 0)
			q.publish(0)
		}},
		{"out of range", func(q *guestQueue, buf uint64) {
			q.writeDesc(q.desc, 0, buf, 8, descFlagNext|descFlagWrite, 200)
			q.publish(0)
		}},
		{"head out of range", func(q *guestQueue, buf uint64) {
			q.publish(q.size + 3)
		}},
		{"wrong direction", func(q *guestQueue, buf uint64) {
			q.writeDesc(q.desc, 0, buf, 8, descFlagNext|descFlagWrite, 1)
			q.writeDesc(q.desc, 1, buf, 8, 0, 0)
			q.publish(0)
		}},
		{"available index jump", func(q *guestQueue, buf uint64) {
			if err := q.g.mem.StoreUint16(q.avail+2, q.size+1); err != nil {
				q.g.t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGuest(t, NewEntropy(nil, nil))
			g.probe(DeviceIDEntropy, FeatureVersion1|FeatureIndirectDesc, 0)
			q := g.queues[0]
			buf := g.alloc(64, 8)

			c.build(q, buf)
			q.kick()
			if st := g.status(); st&StatusDeviceNeedsReset == 0 {
				t.Fatalf("status = %#x, want DEVICE_NEEDS_RESET", st)
			}
			if st := g.ackInterrupt(); st&InterruptConfigChanged == 0 {
				t.Errorf("InterruptStatus = %#x, want the configuration change bit", st)
			}
			if idx, _ := g.mem.LoadUint16(q.used + 2); idx != 0 {
				t.Errorf("used index = %d after a malformed chain, want 0", idx)
			}

			// A broken device ignores further notifications.
			q.kick()
			if idx, _ := g.mem.LoadUint16(q.used + 2); idx != 0 {
				t.Errorf("used index = %d after a notification in DEVICE_NEEDS_RESET, want 0", idx)
			}

			// After a reset and a new bring-up the device works again.
			g.queues = nil
			g.probe(DeviceIDEntropy, FeatureVersion1, 0)
			q = g.queues[0]
			q.submit(gbuf{addr: buf, len: 8, write: true})
			q.kick()
			if used := q.takeUsed(); len(used) != 1 || used[0].len != 8 {
				t.Errorf("used ring after reset = %+v, want one entry of 8 bytes", used)
			}
		})
	}
}

// FuzzChainWalker feeds arbitrary descriptor tables to the walker. It must
// never panic, and every chain it accepts must respect the queue size and
// lie inside RAM.
func FuzzChainWalker(f *testing.F) {
	seed := make([]byte, 64)
	f.Add(seed, uint16(0), uint8(2))
	loop := []byte{
		0x00, 0x10, 0, 0x40, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0,
		0x00, 0x10, 0, 0x40, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0,
	}
	f.Add(loop, uint16(0), uint8(1))
	indirect := []byte{
		0x00, 0x00, 0, 0x40, 0, 0, 0, 0, 32, 0, 0, 0, 4, 0, 0, 0,
	}
	f.Add(indirect, uint16(0), uint8(3))

	f.Fuzz(func(t *testing.T, table []byte, head uint16, sizeLog uint8) {
		mem, err := NewMemory(testRAMBase, make([]byte, 16*PageSize))
		if err != nil {
			t.Fatal(err)
		}
		size := uint16(1) << (sizeLog % 9)
		if len(table) > 16*PageSize {
			table = table[:16*PageSize]
		}
		if err := mem.Write(testRAMBase, table); err != nil {
			t.Fatal(err)
		}
		w := newChainWalker(mem, 0, testRAMBase, size, true)
		for range 2 {
			c, err := w.walk(head)
			if err != nil {
				var ce *ChainError
				if !errors.As(err, &ce) {
					t.Fatalf("walk returned %T %v, want *ChainError", err, err)
				}
				continue
			}
			if n := len(c.Readable) + len(c.Writable); n > int(size) {
				t.Fatalf("accepted a chain of %d buffers in a queue of size %d", n, size)
			}
			for _, b := range append(c.Readable, c.Writable...) {
				if err := mem.Check(b.Addr, uint64(b.Len)); err != nil {
					t.Fatalf("accepted buffer outside RAM: %v", err)
				}
			}
		}
	})
}
