package virtio

import (
	"errors"
	"fmt"
)

const (
	transportStateMagic   = "VMIO"
	transportStateVersion = 1

	// maxDeviceState bounds the device-specific part of a saved transport.
	maxDeviceState = 64 << 20
)

// TransportState is everything a Transport and its device need to continue
// after a capture: the registers, the interrupt status, each queue's
// addresses and ring positions, and the device's own state.
type TransportState struct {
	// DeviceID is the device's virtio device ID; Restore checks it.
	DeviceID uint32
	// Status is the Status register, DEVICE_NEEDS_RESET included.
	Status uint32
	// DeviceFeaturesSel, DriverFeaturesSel and QueueSel are the selector
	// registers.
	DeviceFeaturesSel, DriverFeaturesSel, QueueSel uint32
	// DriverFeatures is the feature set the driver wrote.
	DriverFeatures uint64
	// InterruptStatus holds the interrupt bits the driver has not yet
	// acknowledged.
	InterruptStatus uint32
	// ConfigGeneration is the ConfigGeneration register.
	ConfigGeneration uint32
	// Queues has one entry per queue of the device.
	Queues []QueueState
	// Device is the device-specific state from Device.SaveState.
	Device []byte
}

// Save returns the state of the transport and its device. The VM must be
// paused so that no vCPU accesses the window meanwhile. Host goroutines of
// a device (console port I/O) may still run, because the device's lock
// serializes them with Save.
func (t *Transport) Save() (TransportState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	s := TransportState{
		DeviceID:          t.dev.DeviceID(),
		Status:            t.statusValue(),
		DeviceFeaturesSel: t.deviceFeaturesSel,
		DriverFeaturesSel: t.driverFeaturesSel,
		QueueSel:          t.queueSel,
		DriverFeatures:    t.driverFeatures,
		ConfigGeneration:  t.configGen.Load(),
		Queues:            make([]QueueState, len(t.queueRegs)),
	}
	for i, q := range t.queues {
		if q != nil {
			s.Queues[i] = q.State()
		} else {
			s.Queues[i] = t.queueRegs[i]
		}
	}
	dev, err := t.dev.SaveState()
	if err != nil {
		return TransportState{}, fmt.Errorf("virtio: saving device %d: %w", s.DeviceID, err)
	}
	s.Device = dev

	t.irqMu.Lock()
	s.InterruptStatus = t.interruptStatus
	t.irqMu.Unlock()
	return s, nil
}

// Restore loads s into a transport that the driver has not touched since
// NewTransport, and into its device, which must have been created with the
// same configuration as the saved one. Every value is checked against the
// device and guest memory; on error the transport stays unusable for the
// guest and should be discarded. If the saved device was running, it is
// activated, and a pending interrupt is asserted again on the line.
func (t *Transport) Restore(s TransportState) error {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.status != 0 || t.activated {
		return errors.New("virtio: Restore needs a transport that the driver has not used; create a new one")
	}
	if err := t.checkState(s); err != nil {
		return err
	}

	t.status = s.Status &^ StatusDeviceNeedsReset
	t.needReset.Store(s.Status&StatusDeviceNeedsReset != 0)
	t.deviceFeaturesSel, t.driverFeaturesSel, t.queueSel = s.DeviceFeaturesSel, s.DriverFeaturesSel, s.QueueSel
	t.driverFeatures = s.DriverFeatures
	t.configGen.Store(s.ConfigGeneration)
	for i, qs := range s.Queues {
		t.queueRegs[i] = qs
		t.queues[i] = nil
		if !qs.Ready {
			continue
		}
		q, err := newQueue(i, t.mem, t, qs, s.DriverFeatures)
		if err != nil {
			return fmt.Errorf("virtio: restoring device %d: %w", s.DeviceID, err)
		}
		t.queues[i] = q
	}

	if err := t.dev.RestoreState(s.Device); err != nil {
		return fmt.Errorf("virtio: restoring device %d: %w", s.DeviceID, err)
	}
	t.activated = true
	if t.status&StatusDriverOK != 0 && !t.needReset.Load() {
		if err := t.activateLocked(); err != nil {
			return fmt.Errorf("virtio: restoring device %d: %w", s.DeviceID, err)
		}
	}

	t.irqMu.Lock()
	t.interruptStatus = s.InterruptStatus
	if t.interruptStatus != 0 {
		t.irq.SetLevel(true)
	}
	t.irqMu.Unlock()
	return nil
}

func (t *Transport) checkState(s TransportState) error {
	id := t.dev.DeviceID()
	const knownStatus = StatusAcknowledge | StatusDriver | StatusDriverOK | StatusFeaturesOK | StatusDeviceNeedsReset | StatusFailed
	switch {
	case s.DeviceID != id:
		return fmt.Errorf("virtio: saved state is for device ID %d, this device has ID %d", s.DeviceID, id)
	case len(s.Queues) != len(t.maxSizes):
		return fmt.Errorf("virtio: saved state of device %d has %d queues, this device has %d", id, len(s.Queues), len(t.maxSizes))
	case s.DriverFeatures&^t.offered != 0:
		return fmt.Errorf("virtio: saved state of device %d uses features %#x that this device does not offer (offered %#x); create the device with the saved configuration",
			id, s.DriverFeatures&^t.offered, t.offered)
	case s.Status&^knownStatus != 0:
		return fmt.Errorf("virtio: saved state of device %d has unknown status bits %#x", id, s.Status&^knownStatus)
	case s.Status&StatusDriverOK != 0 && s.Status&StatusFeaturesOK == 0:
		return fmt.Errorf("virtio: saved state of device %d has DRIVER_OK without FEATURES_OK", id)
	case s.InterruptStatus&^(InterruptUsedBuffer|InterruptConfigChanged) != 0:
		return fmt.Errorf("virtio: saved state of device %d has unknown interrupt bits %#x", id, s.InterruptStatus)
	}
	for i, q := range s.Queues {
		if q.Ready && q.Size > t.maxSizes[i] {
			return fmt.Errorf("virtio: saved queue %d of device %d has size %d, more than this device's maximum %d", i, id, q.Size, t.maxSizes[i])
		}
	}
	return nil
}

// MarshalBinary encodes s in the versioned, deterministic format that
// UnmarshalBinary reads.
func (s *TransportState) MarshalBinary() ([]byte, error) {
	e := newStateEncoder(transportStateMagic, transportStateVersion)
	e.u32(s.DeviceID)
	e.u32(s.Status)
	e.u32(s.DeviceFeaturesSel)
	e.u32(s.DriverFeaturesSel)
	e.u32(s.QueueSel)
	e.u64(s.DriverFeatures)
	e.u32(s.InterruptStatus)
	e.u32(s.ConfigGeneration)
	e.u32(uint32(len(s.Queues)))
	for _, q := range s.Queues {
		e.u16(q.Size)
		e.boolean(q.Ready)
		e.u64(q.DescAddr)
		e.u64(q.DriverAddr)
		e.u64(q.DeviceAddr)
		e.u16(q.LastAvailIdx)
		e.u16(q.UsedIdx)
		e.u16(q.SignalledUsedIdx)
	}
	e.bytes(s.Device)
	return e.buf, nil
}

// UnmarshalBinary decodes data written by MarshalBinary. It rejects
// unknown versions, truncated or oversized input and trailing bytes;
// Transport.Restore checks the values themselves.
func (s *TransportState) UnmarshalBinary(data []byte) error {
	d, version := newStateDecoder("transport state", transportStateMagic, data)
	if d.err == nil && version != transportStateVersion {
		return fmt.Errorf("virtio: transport state has format version %d; this build reads version %d", version, transportStateVersion)
	}
	var out TransportState
	out.DeviceID = d.u32()
	out.Status = d.u32()
	out.DeviceFeaturesSel = d.u32()
	out.DriverFeaturesSel = d.u32()
	out.QueueSel = d.u32()
	out.DriverFeatures = d.u64()
	out.InterruptStatus = d.u32()
	out.ConfigGeneration = d.u32()

	n := d.count(maxStateQueues)
	for range n {
		var q QueueState
		q.Size = d.u16()
		q.Ready = d.boolean()
		q.DescAddr = d.u64()
		q.DriverAddr = d.u64()
		q.DeviceAddr = d.u64()
		q.LastAvailIdx = d.u16()
		q.UsedIdx = d.u16()
		q.SignalledUsedIdx = d.u16()
		out.Queues = append(out.Queues, q)
	}
	out.Device = d.bytes(maxDeviceState)

	if err := d.finish(); err != nil {
		return err
	}
	*s = out
	return nil
}

// maxStateQueues bounds the queue count of a decoded state; no device in
// this package has more than a few dozen queues.
const maxStateQueues = 1024
