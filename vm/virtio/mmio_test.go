package virtio

import (
	"encoding/binary"
	"testing"
)

func TestTransportRequiresVersion1(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	if st := g.negotiate(DeviceIDEntropy, FeatureIndirectDesc); st&StatusFeaturesOK != 0 {
		t.Errorf("status = %#x: FEATURES_OK accepted without VIRTIO_F_VERSION_1", st)
	}
}

func TestTransportRejectsUnofferedFeature(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.write32(regStatus, StatusAcknowledge|StatusDriver)
	g.write32(regDriverFeaturesSel, 1)
	g.write32(regDriverFeatures, 1|1<<2) // VERSION_1 and RING_PACKED
	g.addStatus(StatusFeaturesOK)
	if st := g.status(); st&StatusFeaturesOK != 0 {
		t.Errorf("status = %#x: FEATURES_OK accepted with VIRTIO_F_RING_PACKED, which is not offered", st)
	}
}

func TestTransportOffersTransportFeatures(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.write32(regDeviceFeaturesSel, 0)
	low := g.read32(regDeviceFeatures)
	g.write32(regDeviceFeaturesSel, 1)
	high := g.read32(regDeviceFeatures)
	g.write32(regDeviceFeaturesSel, 2)
	beyond := g.read32(regDeviceFeatures)
	if got := uint64(high)<<32 | uint64(low); got != transportFeatures {
		t.Errorf("DeviceFeatures = %#x, want %#x", got, uint64(transportFeatures))
	}
	if beyond != 0 {
		t.Errorf("DeviceFeatures with select 2 = %#x, want 0", beyond)
	}
}

func TestTransportQueueSetupErrors(t *testing.T) {
	cases := []struct {
		name  string
		setup func(g *testGuest)
	}{
		{"size not power of 2", func(g *testGuest) { g.write32(regQueueNum, 3) }},
		{"size above maximum", func(g *testGuest) { g.write32(regQueueNum, rngQueueSize*2) }},
		{"size zero", func(g *testGuest) { g.write32(regQueueNum, 0) }},
		{"descriptor table misaligned", func(g *testGuest) { g.write32(regQueueDescLow, testRAMBase+8) }},
		{"used ring misaligned", func(g *testGuest) { g.write32(regQueueDeviceLow, testRAMBase+0x2002) }},
		{"available ring outside RAM", func(g *testGuest) {
			g.write32(regQueueDriverLow, testRAMBase+testRAMSize-4)
		}},
		{"descriptor table above 4 GiB", func(g *testGuest) { g.write32(regQueueDescHigh, 1) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGuest(t, NewEntropy(nil, nil))
			if st := g.negotiate(DeviceIDEntropy, FeatureVersion1); st&StatusFeaturesOK == 0 {
				t.Fatalf("FEATURES_OK rejected: status %#x", st)
			}
			g.write32(regQueueSel, 0)
			g.write32(regQueueNum, 16)
			g.write32(regQueueDescLow, testRAMBase)
			g.write32(regQueueDriverLow, testRAMBase+0x1000)
			g.write32(regQueueDeviceLow, testRAMBase+0x2000)
			c.setup(g)
			g.write32(regQueueReady, 1)

			if got := g.read32(regQueueReady); got != 0 {
				t.Errorf("QueueReady = %d after an invalid setup, want 0", got)
			}
			if st := g.status(); st&StatusDeviceNeedsReset == 0 {
				t.Errorf("status = %#x, want DEVICE_NEEDS_RESET", st)
			}
		})
	}
}

func TestTransportResetClearsState(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	q := g.queues[0]
	q.submit(gbuf{addr: g.alloc(8, 8), len: 8, write: true})
	q.kick()
	if level, _ := g.irq.snapshot(); !level {
		t.Fatalf("interrupt line not asserted after a used buffer")
	}

	g.write32(regStatus, 0)
	if st := g.status(); st != 0 {
		t.Errorf("status after reset = %#x, want 0", st)
	}
	if st := g.read32(regInterruptStatus); st != 0 {
		t.Errorf("InterruptStatus after reset = %#x, want 0", st)
	}
	if level, _ := g.irq.snapshot(); level {
		t.Errorf("interrupt line asserted after reset")
	}
	g.write32(regQueueSel, 0)
	if got := g.read32(regQueueReady); got != 0 {
		t.Errorf("QueueReady after reset = %d, want 0", got)
	}
	if got := g.read32(regQueueNum); got != 0 {
		t.Errorf("QueueNum after reset = %d, want 0", got)
	}
}

func TestTransportIgnoresInvalidAccesses(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))

	half := []byte{0xff, 0xff}
	g.tr.HandleMMIO(regMagicValue, half, false)
	if half[0] != 0 || half[1] != 0 {
		t.Errorf("16-bit read of MagicValue = %x, want zeros", half)
	}
	word := []byte{0xff, 0xff, 0xff, 0xff}
	g.tr.HandleMMIO(regMagicValue+1, word, false)
	if binary.LittleEndian.Uint32(word) != 0 {
		t.Errorf("unaligned read = %x, want zeros", word)
	}
	g.tr.HandleMMIO(WindowSize, word, false)
	g.tr.HandleMMIO(WindowSize-2, word, true)
	g.tr.HandleMMIO(regConfig, make([]byte, 3), false)
	g.tr.HandleMMIO(regConfig, nil, true)

	g.write32(regMagicValue, 0)
	if got := g.read32(regMagicValue); got != mmioMagic {
		t.Errorf("MagicValue after a write = %#x, want %#x", got, mmioMagic)
	}
	g.write32(regQueueSel, 99)
	if got := g.read32(regQueueNumMax); got != 0 {
		t.Errorf("QueueNumMax of a missing queue = %d, want 0", got)
	}
	g.write32(regQueueNum, 8) // ignored: the queue does not exist
	g.write32(regQueueNotify, 99)
	if st := g.status(); st != 0 {
		t.Errorf("status after ignored accesses = %#x, want 0", st)
	}
}

func TestTransportNoSharedMemoryRegions(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	if low, high := g.read32(regSHMLenLow), g.read32(regSHMLenHigh); low != 0xffffffff || high != 0xffffffff {
		t.Errorf("SHMLen = %#x%08x, want all ones (no region)", high, low)
	}
}

func TestTransportStatusCannotClearBits(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.probe(DeviceIDEntropy, FeatureVersion1, 0)
	g.write32(regStatus, StatusAcknowledge)
	if st := g.status(); st&StatusDriverOK == 0 {
		t.Errorf("status = %#x: a write without DRIVER_OK cleared it", st)
	}
}

func TestTransportDriverOKNeedsFeaturesOK(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.write32(regStatus, StatusAcknowledge|StatusDriver|StatusDriverOK)
	if st := g.status(); st&StatusDriverOK != 0 {
		t.Errorf("status = %#x: DRIVER_OK accepted without FEATURES_OK", st)
	}
}

func TestTransportQueueReadyBeforeFeaturesOK(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.write32(regStatus, StatusAcknowledge|StatusDriver)
	g.write32(regQueueSel, 0)
	g.write32(regQueueNum, 16)
	g.write32(regQueueReady, 1)
	if st := g.status(); st&StatusDeviceNeedsReset == 0 {
		t.Errorf("status = %#x, want DEVICE_NEEDS_RESET", st)
	}
}

func TestTransportNotifyBeforeDriverOK(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	g.negotiate(DeviceIDEntropy, FeatureVersion1)
	q := g.setupQueue(0, 16, false)
	q.submit(gbuf{addr: g.alloc(8, 8), len: 8, write: true})
	q.kick()
	if idx, _ := g.mem.LoadUint16(q.used + 2); idx != 0 {
		t.Errorf("used index = %d: device ran before DRIVER_OK", idx)
	}
	g.addStatus(StatusDriverOK)
	q.kick()
	if used := q.takeUsed(); len(used) != 1 {
		t.Errorf("used ring after DRIVER_OK = %+v, want one entry", used)
	}
}

func TestTransportConfigGeneration(t *testing.T) {
	g := newTestGuest(t, NewEntropy(nil, nil))
	before := g.read32(regConfigGeneration)
	g.tr.configChanged()
	if after := g.read32(regConfigGeneration); after != before+1 {
		t.Errorf("ConfigGeneration = %d after a change, want %d", after, before+1)
	}
	if st := g.ackInterrupt(); st != InterruptConfigChanged {
		t.Errorf("InterruptStatus = %#x, want %#x", st, InterruptConfigChanged)
	}
}
