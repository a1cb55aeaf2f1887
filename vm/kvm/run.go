package kvm

import (
	"encoding/binary"
	"runtime"
)

// Offsets into struct kvm_run (include/uapi/linux/kvm.h, Linux 6.1). The
// exit-specific union starts at byte 32.
const (
	runImmediateExit = 1
	runExitReason    = 8
	runUnion         = 32
)

// ExitReason returns kvm_run.exit_reason from the last Run.
func (c *VCPU) ExitReason() uint32 {
	return binary.NativeEndian.Uint32(c.run[runExitReason:])
}

// SetImmediateExit sets kvm_run.immediate_exit. While it is set, KVM_RUN
// returns EINTR at once instead of entering the guest, which closes the race
// between checking for a pause request and entering the guest.
func (c *VCPU) SetImmediateExit(on bool) {
	var v byte
	if on {
		v = 1
	}
	c.run[runImmediateExit] = v
}

// MMIOExit is the kvm_run.mmio union of a KVM_EXIT_MMIO exit: a guest load
// or store to a physical address that no memslot backs.
type MMIOExit struct {
	PhysAddr uint64
	// Data holds the stored bytes for a write; for a read the VMM fills it
	// with SetMMIOData before the next Run.
	Data    [8]byte
	Len     uint32
	IsWrite bool
}

// MMIO returns the MMIO exit data. It is valid only after Run returned
// ExitMMIO.
func (c *VCPU) MMIO() MMIOExit {
	u := c.run[runUnion:]
	var m MMIOExit
	m.PhysAddr = binary.NativeEndian.Uint64(u[0:])
	copy(m.Data[:], u[8:16])
	m.Len = binary.NativeEndian.Uint32(u[16:])
	m.IsWrite = u[20] != 0
	return m
}

// SetMMIOData stores the result of an MMIO read, which KVM loads into the
// guest register on the next Run.
func (c *VCPU) SetMMIOData(data []byte) {
	copy(c.run[runUnion+8:runUnion+16], data)
}

// SystemEvent is the kvm_run.system_event union of a KVM_EXIT_SYSTEM_EVENT
// exit, such as a PSCI SYSTEM_OFF or SYSTEM_RESET call.
type SystemEvent struct {
	Type  uint32
	NData uint32
	Data  [16]uint64
}

// System event types.
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// SystemEvent returns the system event data. It is valid only after Run
// returned ExitSystemEvent.
func (c *VCPU) SystemEvent() SystemEvent {
	u := c.run[runUnion:]
	e := SystemEvent{
		Type:  binary.NativeEndian.Uint32(u[0:]),
		NData: binary.NativeEndian.Uint32(u[4:]),
	}
	for i := range e.Data {
		e.Data[i] = binary.NativeEndian.Uint64(u[8+8*i:])
	}
	return e
}

// InternalError returns kvm_run.internal.suberror after ExitInternalError.
func (c *VCPU) InternalError() uint32 {
	return binary.NativeEndian.Uint32(c.run[runUnion:])
}

// FailEntryReason returns hardware_entry_failure_reason after ExitFailEntry.
func (c *VCPU) FailEntryReason() uint64 {
	return binary.NativeEndian.Uint64(c.run[runUnion:])
}

// keepAlive keeps v reachable until this call, for buffers whose address
// was passed to the kernel inside a struct.
func keepAlive(v any) { runtime.KeepAlive(v) }
