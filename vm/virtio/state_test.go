package virtio

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cloneMemory copies guest RAM into a new Memory, as restoring a memory
// snapshot does.
func cloneMemory(t *testing.T, mem *Memory) *Memory {
	t.Helper()
	clone, err := NewMemory(mem.Base(), bytes.Clone(mem.data))
	if err != nil {
		t.Fatal(err)
	}
	return clone
}

// saveEncoded saves the transport and returns its encoding, checking that
// saving twice gives the same bytes.
func saveEncoded(t *testing.T, tr *Transport) []byte {
	t.Helper()
	var encodings [][]byte
	for range 2 {
		st, err := tr.Save()
		if err != nil {
			t.Fatalf("Save: %v", err)
		}
		raw, err := st.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary: %v", err)
		}
		encodings = append(encodings, raw)
	}
	if !bytes.Equal(encodings[0], encodings[1]) {
		t.Fatalf("two saves of a paused device encode differently")
	}
	return encodings[0]
}

// restoreInto decodes raw and restores it into a new transport for dev
// over mem, then points the test guest at it.
func restoreInto(t *testing.T, g *testGuest, dev Device, mem *Memory, raw []byte) {
	t.Helper()
	var st TransportState
	if err := st.UnmarshalBinary(raw); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	irq := &testIRQ{}
	tr, err := NewTransport(dev, mem, irq, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Restore(st); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	g.mem, g.tr, g.irq = mem, tr, irq
}

func TestSaveRestoreConsoleMidStream(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	g.bringUp()
	agent := g.dev.Port(1)

	// Mid-stream: the guest transmitted bytes the host has not read, and
	// the host wrote more than the guest's receive buffers hold.
	g.transmit(g.queues[5], []byte("sent before capture"))
	toGuest := make([]byte, testRxBufs*testBufSize+1904)
	for i := range toGuest {
		toGuest[i] = byte(i % 251)
	}
	if _, err := agent.Write(toGuest); err != nil {
		t.Fatal(err)
	}
	if pending, _ := agent.Buffered(); pending != 1904 {
		t.Fatalf("bytes waiting for guest buffers = %d, want 1904", pending)
	}
	statusBefore := g.status()
	raw := saveEncoded(t, g.tr)

	dev, err := NewConsole(DefaultConsolePorts(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	restoreInto(t, g.testGuest, dev, cloneMemory(t, g.mem), raw)
	g.dev = dev

	if got := g.status(); got != statusBefore {
		t.Errorf("status after restore = %#x, want %#x", got, statusBefore)
	}
	if level, _ := g.irq.snapshot(); !level {
		t.Errorf("pending interrupt was not asserted again after restore")
	}
	if st := g.ackInterrupt(); st&InterruptUsedBuffer == 0 {
		t.Errorf("InterruptStatus after restore = %#x, want the used buffer bit", st)
	}

	// The guest drains its full buffers and posts them again; the device
	// then delivers the rest it buffered before the capture.
	var got []byte
	for range 4 {
		got = append(got, g.receive(g.queues[4])...)
	}
	if !bytes.Equal(got, toGuest) {
		t.Errorf("guest received %d bytes across the restore, want the %d written", len(got), len(toGuest))
	}

	buf := make([]byte, 64)
	n, err := dev.Port(1).Read(buf)
	if err != nil || string(buf[:n]) != "sent before capture" {
		t.Errorf("host read %q, %v after restore; want %q", buf[:n], err, "sent before capture")
	}

	// Traffic continues in both directions on the restored rings.
	g.transmit(g.queues[5], []byte("after"))
	n, err = dev.Port(1).Read(buf)
	if err != nil || string(buf[:n]) != "after" {
		t.Errorf("host read %q, %v; want %q", buf[:n], err, "after")
	}
	if _, err := dev.Port(1).Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if got := string(g.receive(g.queues[4])); got != "reply" {
		t.Errorf("guest received %q, want %q", got, "reply")
	}
}

func TestSaveRestoreBlock(t *testing.T) {
	disk, path := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk, ID: "vda"})
	data := g.alloc(SectorSize, 8)
	if st, _ := g.request(blkTypeIn, 1, gbuf{addr: data, len: SectorSize, write: true}); st != blkStatusOK {
		t.Fatalf("read before capture: status %d", st)
	}
	raw := saveEncoded(t, g.tr)

	disk2, err := OpenFileBacking(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer disk2.Close()
	dev, err := NewBlock(BlockConfig{Backing: disk2, ID: "vda"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	restoreInto(t, g.testGuest, dev, cloneMemory(t, g.mem), raw)

	g.writeMem(data, bytes.Repeat([]byte{0x5a}, SectorSize))
	if st, _ := g.request(blkTypeOut, 9, gbuf{addr: data, len: SectorSize}); st != blkStatusOK {
		t.Fatalf("write after restore: status %d", st)
	}
	out := g.alloc(SectorSize, 8)
	if st, _ := g.request(blkTypeIn, 9, gbuf{addr: out, len: SectorSize, write: true}); st != blkStatusOK {
		t.Fatalf("read after restore: status %d", st)
	}
	if got := g.readMem(out, SectorSize); !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, SectorSize)) {
		t.Errorf("sector 9 read after restore does not match what was written")
	}
	if idx, _ := g.mem.LoadUint16(g.q.used + 2); idx != 3 {
		t.Errorf("used index = %d, want 3 (one request before and two after the restore)", idx)
	}
}

func TestRestoreRejectsOtherDisk(t *testing.T) {
	disk, _ := testDisk(t, false)
	g := newBlkGuest(t, BlockConfig{Backing: disk, ID: "vda"})
	raw := saveEncoded(t, g.tr)
	var st TransportState
	if err := st.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}

	bigger := filepath.Join(t.TempDir(), "bigger.img")
	if err := os.WriteFile(bigger, make([]byte, 2*testDiskSectors*SectorSize), 0o600); err != nil {
		t.Fatal(err)
	}
	other, err := OpenFileBacking(bigger, false)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	roDisk, _ := testDisk(t, true)

	cases := []struct {
		name string
		cfg  BlockConfig
		want string
	}{
		{"capacity", BlockConfig{Backing: other, ID: "vda"}, "sectors"},
		{"read-only", BlockConfig{Backing: roDisk, ReadOnly: true, ID: "vda"}, "read-only"},
		{"id", BlockConfig{Backing: disk, ID: "vdb"}, "ID"},
	}
	for _, c := range cases {
		dev, err := NewBlock(c.cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTransport(dev, cloneMemory(t, g.mem), &testIRQ{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = tr.Restore(st)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Restore = %v, want an error about %s", c.name, err, c.want)
		}
	}
}

func TestRestoreRejectsMismatch(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	st, err := g.tr.Save()
	if err != nil {
		t.Fatal(err)
	}

	fresh := func(dev Device) *Transport {
		tr, err := NewTransport(dev, cloneMemory(t, g.mem), &testIRQ{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	console, err := NewConsole(DefaultConsolePorts(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh(console).Restore(st); err == nil {
		t.Errorf("entropy state restored into a console")
	}
	if err := g.tr.Restore(st); err == nil {
		t.Errorf("state restored into a transport the driver already used")
	}

	moved := st
	moved.Queues = append([]QueueState(nil), st.Queues...)
	moved.Queues[0].DeviceAddr = testRAMBase + testRAMSize
	if err := fresh(NewEntropy(nil, nil)).Restore(moved); err == nil {
		t.Errorf("state with a used ring outside RAM restored")
	}

	packed := st
	packed.DriverFeatures |= 1 << 34
	if err := fresh(NewEntropy(nil, nil)).Restore(packed); err == nil {
		t.Errorf("state with an unoffered feature restored")
	}
}

func TestRestoreKeepsNeedsReset(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	g.queues[0].publish(g.queues[0].size + 1) // head out of range
	g.queues[0].kick()
	raw := saveEncoded(t, g.tr)
	restoreInto(t, g, NewEntropy(nil, nil), cloneMemory(t, g.mem), raw)
	if st := g.status(); st&StatusDeviceNeedsReset == 0 {
		t.Errorf("status after restore = %#x, want DEVICE_NEEDS_RESET kept", st)
	}
}

func TestStateDecodeRejectsBadInput(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	raw := saveEncoded(t, g.tr)

	var st TransportState
	cases := map[string][]byte{
		"empty":          nil,
		"wrong magic":    append([]byte("XXXX"), raw[4:]...),
		"future version": append(append([]byte(transportStateMagic), 2, 0), raw[6:]...),
		"truncated":      raw[:len(raw)-1],
		"trailing byte":  append(bytes.Clone(raw), 0),
	}
	for name, data := range cases {
		if err := st.UnmarshalBinary(data); err == nil {
			t.Errorf("%s: UnmarshalBinary succeeded", name)
		}
	}
}

// FuzzTransportStateDecode checks that decoding arbitrary bytes never
// panics and that what decodes encodes back to the same bytes.
func FuzzTransportStateDecode(f *testing.F) {
	s := TransportState{DeviceID: 2, Status: 15, Queues: []QueueState{{Size: 8, Ready: true, UsedIdx: 3}}, Device: []byte("VBLK")}
	seed, _ := s.MarshalBinary()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var st TransportState
		if err := st.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := st.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("decoded state encodes to %x, want %x", again, data)
		}
	})
}

// FuzzConsoleStateDecode does the same for the console state, and loads
// every decoded state into a console.
func FuzzConsoleStateDecode(f *testing.F) {
	c, _ := NewConsole(DefaultConsolePorts(), nil)
	c.ports[1].toHost = []byte("abc")
	c.control = [][]byte{make([]byte, consoleControlSize)}
	seed, _ := c.SaveState()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var st ConsoleState
		if err := st.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := st.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("decoded state encodes to %x, want %x", again, data)
		}
		fresh, _ := NewConsole(DefaultConsolePorts(), nil)
		_ = fresh.SetState(st)
	})
}

func TestRestoreReportsActivationFailure(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	st, err := g.tr.Save()
	if err != nil {
		t.Fatal(err)
	}
	st.Queues[0].Ready = false // the entropy device cannot run without its queue

	tr, err := NewTransport(NewEntropy(nil, nil), cloneMemory(t, g.mem), &testIRQ{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Restore(st); err == nil || !strings.Contains(err.Error(), "request queue") {
		t.Errorf("Restore = %v, want an error about the request queue", err)
	}
}
