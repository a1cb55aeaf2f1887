package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// WindowSize is the size of a virtio-mmio device's register window in bytes.
const WindowSize = 0x200

// Register offsets of the virtio-mmio version 2 layout.
const (
	regMagicValue        = 0x000
	regVersion           = 0x004
	regDeviceID          = 0x008
	regVendorID          = 0x00c
	regDeviceFeatures    = 0x010
	regDeviceFeaturesSel = 0x014
	regDriverFeatures    = 0x020
	regDriverFeaturesSel = 0x024
	regQueueSel          = 0x030
	regQueueNumMax       = 0x034
	regQueueNum          = 0x038
	regQueueReady        = 0x044
	regQueueNotify       = 0x050
	regInterruptStatus   = 0x060
	regInterruptACK      = 0x064
	regStatus            = 0x070
	regQueueDescLow      = 0x080
	regQueueDescHigh     = 0x084
	regQueueDriverLow    = 0x090
	regQueueDriverHigh   = 0x094
	regQueueDeviceLow    = 0x0a0
	regQueueDeviceHigh   = 0x0a4
	regSHMLenLow         = 0x0b0
	regSHMLenHigh        = 0x0b4
	regSHMBaseLow        = 0x0b8
	regSHMBaseHigh       = 0x0bc
	regConfigGeneration  = 0x0fc
	regConfig            = 0x100

	mmioMagic   = 0x74726976 // "virt" in little-endian
	mmioVersion = 2
	// VendorID is the value of the VendorID register ("SPOR" in ASCII).
	VendorID = 0x524f5053
)

// Device status bits (virtio 1.2, "Device Status Field").
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// InterruptStatus bits.
const (
	InterruptUsedBuffer    = 1
	InterruptConfigChanged = 2
)

// Transport is the virtio-mmio transport of one device: the register
// window that the driver programs, the interrupt status, and the queues.
// See the package documentation for the threading model.
type Transport struct {
	dev Device
	mem *Memory
	irq InterruptLine
	log *deviceLogger

	offered   uint64   // device and transport feature bits
	maxSizes  []uint16 // QueueNumMax per queue
	needReset atomic.Bool
	configGen atomic.Uint32

	mu                sync.Mutex // guards the registers below
	deviceFeaturesSel uint32
	driverFeaturesSel uint32
	driverFeatures    uint64
	queueSel          uint32
	status            uint32 // without StatusDeviceNeedsReset, which needReset carries
	queueRegs         []QueueState
	queues            []*Queue // set by QueueReady, handed to the device at DRIVER_OK
	activated         bool     // whether restore is still allowed

	irqMu           sync.Mutex
	interruptStatus uint32
}

// NewTransport returns the transport for dev over guest memory mem,
// signalling the driver through irq. logger receives driver errors; nil
// means slog.Default().
func NewTransport(dev Device, mem *Memory, irq InterruptLine, logger *slog.Logger) (*Transport, error) {
	if dev == nil || mem == nil || irq == nil {
		return nil, errors.New("virtio: NewTransport needs a device, guest memory and an interrupt line")
	}
	sizes := dev.QueueMaxSizes()
	for i, n := range sizes {
		if n == 0 || n > MaxQueueSize || n&(n-1) != 0 {
			return nil, fmt.Errorf("virtio: device %d queue %d has maximum size %d; it must be a power of 2 up to %d",
				dev.DeviceID(), i, n, MaxQueueSize)
		}
	}
	return &Transport{
		dev:       dev,
		mem:       mem,
		irq:       irq,
		log:       newDeviceLogger(logger, "virtio_device", dev.DeviceID()),
		offered:   dev.Features() | transportFeatures,
		maxSizes:  sizes,
		queueRegs: make([]QueueState, len(sizes)),
		queues:    make([]*Queue, len(sizes)),
	}, nil
}

// Device returns the device behind the transport.
func (t *Transport) Device() Device { return t.dev }

// HandleMMIO performs one guest access at offset inside the register
// window. For a read it fills data; for a write it consumes data. Control
// registers (below 0x100) take 32-bit aligned accesses only; the
// configuration space at 0x100 takes 1, 2, 4 and 8-byte accesses. Invalid
// accesses read as zero and are otherwise ignored, and they are logged.
func (t *Transport) HandleMMIO(offset uint64, data []byte, isWrite bool) {
	if offset >= WindowSize || uint64(len(data)) > WindowSize-offset || len(data) == 0 {
		t.logDriverError("access outside the register window", "offset", offset, "len", len(data))
		zeroIfRead(data, isWrite)
		return
	}
	if offset >= regConfig {
		t.handleConfig(offset-regConfig, data, isWrite)
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		t.logDriverError("control register access is not 32-bit aligned", "offset", offset, "len", len(data))
		zeroIfRead(data, isWrite)
		return
	}

	if !isWrite {
		binary.LittleEndian.PutUint32(data, t.readRegister(offset))
		return
	}
	notify := t.writeRegister(offset, binary.LittleEndian.Uint32(data))
	if notify >= 0 {
		t.dev.Notify(notify)
	}
}

func zeroIfRead(data []byte, isWrite bool) {
	if !isWrite {
		clear(data)
	}
}

func (t *Transport) handleConfig(offset uint64, data []byte, isWrite bool) {
	switch len(data) {
	case 1, 2, 4, 8:
	default:
		t.logDriverError("configuration space access has an invalid width", "offset", offset, "len", len(data))
		zeroIfRead(data, isWrite)
		return
	}
	if isWrite {
		t.dev.WriteConfig(offset, data)
	} else {
		t.dev.ReadConfig(offset, data)
	}
}

func (t *Transport) readRegister(offset uint64) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()

	var q *QueueState
	if t.queueSel < uint32(len(t.queueRegs)) {
		q = &t.queueRegs[t.queueSel]
	}
	switch offset {
	case regMagicValue:
		return mmioMagic
	case regVersion:
		return mmioVersion
	case regDeviceID:
		return t.dev.DeviceID()
	case regVendorID:
		return VendorID
	case regDeviceFeatures:
		if t.deviceFeaturesSel > 1 {
			return 0
		}
		return uint32(t.offered >> (32 * t.deviceFeaturesSel))
	case regQueueNumMax:
		if q == nil {
			return 0
		}
		return uint32(t.maxSizes[t.queueSel])
	case regQueueReady:
		if q == nil || !q.Ready {
			return 0
		}
		return 1
	case regInterruptStatus:
		t.irqMu.Lock()
		defer t.irqMu.Unlock()
		return t.interruptStatus
	case regStatus:
		return t.statusValue()
	case regSHMLenLow, regSHMLenHigh, regSHMBaseLow, regSHMBaseHigh:
		return 0xffffffff // no shared memory regions: a length of -1
	case regConfigGeneration:
		return t.configGen.Load()
	}
	if q != nil {
		switch offset {
		case regQueueNum:
			return uint32(q.Size)
		case regQueueDescLow:
			return uint32(q.DescAddr)
		case regQueueDescHigh:
			return uint32(q.DescAddr >> 32)
		case regQueueDriverLow:
			return uint32(q.DriverAddr)
		case regQueueDriverHigh:
			return uint32(q.DriverAddr >> 32)
		case regQueueDeviceLow:
			return uint32(q.DeviceAddr)
		case regQueueDeviceHigh:
			return uint32(q.DeviceAddr >> 32)
		}
	}
	return 0
}

func (t *Transport) statusValue() uint32 {
	if t.needReset.Load() {
		return t.status | StatusDeviceNeedsReset
	}
	return t.status
}

// writeRegister performs a register write and returns the index of the
// queue to notify, or -1.
func (t *Transport) writeRegister(offset uint64, v uint32) int {
	t.mu.Lock()
	defer t.mu.Unlock()

	switch offset {
	case regDeviceFeaturesSel:
		t.deviceFeaturesSel = v
	case regDriverFeaturesSel:
		t.driverFeaturesSel = v
	case regDriverFeatures:
		t.writeDriverFeatures(v)
	case regQueueSel:
		t.queueSel = v
	case regQueueNotify:
		return t.queueToNotify(v)
	case regInterruptACK:
		t.acknowledge(v)
	case regStatus:
		t.writeStatus(v)
	case regQueueNum, regQueueReady, regQueueDescLow, regQueueDescHigh,
		regQueueDriverLow, regQueueDriverHigh, regQueueDeviceLow, regQueueDeviceHigh:
		t.writeQueueRegister(offset, v)
	default:
		t.logDriverError("write to a read-only or unknown register", "offset", offset, "value", v)
	}
	return -1
}

func (t *Transport) writeDriverFeatures(v uint32) {
	if t.status&StatusDriver == 0 || t.status&StatusFeaturesOK != 0 {
		t.logDriverError("DriverFeatures written outside feature negotiation", "status", t.status)
		return
	}
	switch t.driverFeaturesSel {
	case 0:
		t.driverFeatures = t.driverFeatures&^0xffffffff | uint64(v)
	case 1:
		t.driverFeatures = t.driverFeatures&0xffffffff | uint64(v)<<32
	default:
		if v != 0 {
			t.logDriverError("driver accepted feature bits the device does not offer", "select", t.driverFeaturesSel, "value", v)
		}
	}
}

func (t *Transport) queueToNotify(v uint32) int {
	if t.status&StatusDriverOK == 0 || t.needReset.Load() {
		return -1
	}
	if v >= uint32(len(t.queues)) || t.queues[v] == nil {
		t.logDriverError("notification for a queue that is not ready", "queue", v)
		return -1
	}
	return int(v)
}

func (t *Transport) writeQueueRegister(offset uint64, v uint32) {
	if t.queueSel >= uint32(len(t.queueRegs)) {
		t.logDriverError("queue register written for a queue that does not exist", "queue", t.queueSel, "offset", offset)
		return
	}
	q := &t.queueRegs[t.queueSel]
	if offset == regQueueReady {
		t.writeQueueReady(v)
		return
	}
	if q.Ready {
		t.logDriverError("queue register written while the queue is ready", "queue", t.queueSel, "offset", offset)
		return
	}
	switch offset {
	case regQueueNum:
		// Saturate instead of truncating, so QueueReady rejects a value
		// that is too large instead of seeing a wrapped one.
		q.Size = uint16(min(v, 0xffff))
	case regQueueDescLow:
		q.DescAddr = q.DescAddr&^0xffffffff | uint64(v)
	case regQueueDescHigh:
		q.DescAddr = q.DescAddr&0xffffffff | uint64(v)<<32
	case regQueueDriverLow:
		q.DriverAddr = q.DriverAddr&^0xffffffff | uint64(v)
	case regQueueDriverHigh:
		q.DriverAddr = q.DriverAddr&0xffffffff | uint64(v)<<32
	case regQueueDeviceLow:
		q.DeviceAddr = q.DeviceAddr&^0xffffffff | uint64(v)
	case regQueueDeviceHigh:
		q.DeviceAddr = q.DeviceAddr&0xffffffff | uint64(v)<<32
	}
}

// writeQueueReady enables or disables the selected queue. Enabling
// validates the queue size and ring placement; a driver that gets them
// wrong gets DEVICE_NEEDS_RESET.
func (t *Transport) writeQueueReady(v uint32) {
	index := int(t.queueSel)
	q := &t.queueRegs[index]
	if v == 0 {
		if t.status&StatusDriverOK != 0 && q.Ready {
			t.fail(fmt.Errorf("virtqueue %d disabled while the device is running", index))
			return
		}
		q.Ready = false
		t.queues[index] = nil
		return
	}
	if q.Ready {
		return
	}

	if t.status&StatusFeaturesOK == 0 {
		t.fail(fmt.Errorf("virtqueue %d enabled before FEATURES_OK", index))
		return
	}
	if q.Size > t.maxSizes[index] {
		t.fail(fmt.Errorf("virtqueue %d: queue size %d is larger than QueueNumMax %d", index, q.Size, t.maxSizes[index]))
		return
	}

	state := *q
	state.Ready = true
	state.LastAvailIdx, state.UsedIdx, state.SignalledUsedIdx = 0, 0, 0
	queue, err := newQueue(index, t.mem, t, state, t.driverFeatures)
	if err != nil {
		t.fail(err)
		return
	}
	q.Ready = true
	t.queues[index] = queue
}

// writeStatus applies a driver write to the Status register: 0 resets the
// device, FEATURES_OK is granted only for an acceptable feature set, and
// DRIVER_OK activates the device.
func (t *Transport) writeStatus(v uint32) {
	if v == 0 {
		t.resetLocked()
		return
	}
	v &^= StatusDeviceNeedsReset
	if v&t.status != t.status {
		t.logDriverError("driver cleared device status bits without a reset", "old", t.status, "new", v)
		return
	}
	added := v &^ t.status

	if added&StatusFeaturesOK != 0 {
		if err := t.checkFeatures(); err != nil {
			t.logDriverError("feature negotiation failed", "error", err)
			v &^= StatusFeaturesOK
			added &^= StatusFeaturesOK
		}
	}
	if added&StatusDriverOK != 0 && v&StatusFeaturesOK == 0 {
		t.logDriverError("DRIVER_OK set without FEATURES_OK", "status", v)
		v &^= StatusDriverOK
		added &^= StatusDriverOK
	}
	t.status = v

	if added&StatusDriverOK != 0 && !t.needReset.Load() {
		if err := t.activateLocked(); err != nil {
			t.fail(err)
		}
	}
}

func (t *Transport) checkFeatures() error {
	if extra := t.driverFeatures &^ t.offered; extra != 0 {
		return fmt.Errorf("driver accepted features %#x that the device does not offer (offered %#x)", extra, t.offered)
	}
	if t.driverFeatures&FeatureVersion1 == 0 {
		return fmt.Errorf("driver did not accept VIRTIO_F_VERSION_1 (features %#x); legacy drivers are not supported", t.driverFeatures)
	}
	return nil
}

func (t *Transport) activateLocked() error {
	t.activated = true
	a := &Activation{
		Memory:        t.mem,
		Queues:        append([]*Queue(nil), t.queues...),
		Features:      t.driverFeatures,
		ConfigChanged: t.configChanged,
	}
	if err := t.dev.Activate(a); err != nil {
		return fmt.Errorf("activating the device: %w", err)
	}
	return nil
}

// resetLocked returns the transport and the device to their initial state.
func (t *Transport) resetLocked() {
	t.dev.Reset()
	t.status = 0
	t.deviceFeaturesSel, t.driverFeaturesSel, t.driverFeatures, t.queueSel = 0, 0, 0, 0
	clear(t.queueRegs)
	clear(t.queues)
	t.needReset.Store(false)
	t.irqMu.Lock()
	t.interruptStatus = 0
	t.irq.SetLevel(false)
	t.irqMu.Unlock()
}

func (t *Transport) acknowledge(v uint32) {
	t.irqMu.Lock()
	defer t.irqMu.Unlock()
	t.interruptStatus &^= v
	if t.interruptStatus == 0 {
		t.irq.SetLevel(false)
	}
}

func (t *Transport) raise(bit uint32) {
	t.irqMu.Lock()
	defer t.irqMu.Unlock()
	t.interruptStatus |= bit
	t.irq.SetLevel(true)
}

func (t *Transport) raiseUsed() { t.raise(InterruptUsedBuffer) }

func (t *Transport) configChanged() {
	t.configGen.Add(1)
	t.raise(InterruptConfigChanged)
}

func (t *Transport) broken() bool { return t.needReset.Load() }

// fail puts the device into DEVICE_NEEDS_RESET after a driver error and
// notifies the driver with a configuration change interrupt. Only the first
// error until the next reset is logged.
func (t *Transport) fail(err error) {
	if t.needReset.Swap(true) {
		return
	}
	t.log.warn("virtio: driver error; device needs reset", "error", err)
	t.raise(InterruptConfigChanged)
}

// logDriverError logs a register access that the device ignored.
func (t *Transport) logDriverError(msg string, args ...any) {
	t.log.warn("virtio: ignored invalid register access: "+msg, args...)
}
