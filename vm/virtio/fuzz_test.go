package virtio

import (
	"encoding/binary"
	"testing"
)

// memBacking is an in-memory BlockBacking for tests that need no file.
type memBacking struct{ data []byte }

func (m *memBacking) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.data[off:]), nil }
func (m *memBacking) WriteAt(p []byte, off int64) (int, error) { return copy(m.data[off:], p), nil }
func (m *memBacking) Flush() error                             { return nil }
func (m *memBacking) Size() int64                              { return int64(len(m.data)) }

// FuzzDeviceQueues lets a hostile driver write arbitrary bytes over the
// descriptor table and available ring of a running device, then notify
// every queue. Nothing may panic, and the device must either keep working
// or report DEVICE_NEEDS_RESET.
func FuzzDeviceQueues(f *testing.F) {
	// A valid block read: header at buf, 512 bytes of data, status byte.
	valid := make([]byte, 3*16+6+2*8)
	buf := uint64(testRAMBase + 0x100000)
	binary.LittleEndian.PutUint64(valid[0:], buf)
	binary.LittleEndian.PutUint32(valid[8:], 16)
	binary.LittleEndian.PutUint16(valid[12:], descFlagNext)
	binary.LittleEndian.PutUint16(valid[14:], 1)
	binary.LittleEndian.PutUint64(valid[16:], buf+16)
	binary.LittleEndian.PutUint32(valid[24:], 512)
	binary.LittleEndian.PutUint16(valid[28:], descFlagNext|descFlagWrite)
	binary.LittleEndian.PutUint16(valid[30:], 2)
	binary.LittleEndian.PutUint64(valid[32:], buf+528)
	binary.LittleEndian.PutUint32(valid[40:], 1)
	binary.LittleEndian.PutUint16(valid[44:], descFlagWrite)
	binary.LittleEndian.PutUint16(valid[48+2:], 1) // avail idx 1, ring[0] = 0
	f.Add(valid, uint8(0))
	f.Add(valid, uint8(1))
	f.Add(valid, uint8(2))

	f.Fuzz(func(t *testing.T, rings []byte, which uint8) {
		var dev Device
		switch which % 3 {
		case 0:
			blk, err := NewBlock(BlockConfig{Backing: &memBacking{data: make([]byte, 8*SectorSize)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			dev = blk
		case 1:
			console, err := NewConsole(DefaultConsolePorts(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer console.Close()
			dev = console
		default:
			dev = NewEntropy(nil, nil)
		}
		g := newTestGuest(t, dev)
		g.probe(dev.DeviceID(), ^uint64(0), 8)

		for _, q := range g.queues {
			// The descriptor table (128 bytes) and the available ring
			// directly after it are overwritten with the fuzz input.
			n := min(len(rings), 16*8+6+2*8)
			g.writeMem(q.desc, rings[:n])
			q.kick()
		}
		if st := g.status(); st&StatusDriverOK == 0 {
			t.Fatalf("status = %#x, DRIVER_OK was lost", st)
		}
	})
}
