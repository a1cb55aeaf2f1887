package kvm

import (
	"fmt"
	"unsafe"
)

// VM is a KVM virtual machine handle.
type VM struct {
	fd *fd
	// runSize is the size of each vCPU's kvm_run mapping, from
	// KVM_GET_VCPU_MMAP_SIZE.
	runSize int
}

// Close closes the VM descriptor. The kernel frees the VM once every vCPU
// and device descriptor is closed too.
func (v *VM) Close() error { return v.fd.Close() }

// FD returns the raw VM descriptor, valid until Close.
func (v *VM) FD() int { return v.fd.Int() }

// SetUserMemoryRegion maps size bytes of host memory at hostAddr into the
// guest at guestAddr as memslot slot. A size of zero deletes the slot.
func (v *VM) SetUserMemoryRegion(slot uint32, flags uint32, guestAddr, size uint64, hostAddr uintptr) error {
	region := userspaceMemoryRegion{
		Slot:          slot,
		Flags:         flags,
		GuestPhysAddr: guestAddr,
		MemorySize:    size,
		UserspaceAddr: uint64(hostAddr),
	}
	_, errno := ioctlPtr(v.fd.Int(), _KVM_SET_USER_MEMORY_REGION, &region)
	return wrap("KVM_SET_USER_MEMORY_REGION", fmt.Sprintf("vm memslot %d", slot), errno)
}

// GetDirtyLog fills bitmap with one bit per page of memslot slot that the
// guest wrote since the last call, and resets those bits in the kernel.
// bitmap must hold at least one bit per page of the slot, rounded up to 64.
func (v *VM) GetDirtyLog(slot uint32, bitmap []uint64) error {
	if len(bitmap) == 0 {
		return fmt.Errorf("dirty log of memslot %d: empty bitmap", slot)
	}
	log := dirtyLog{Slot: slot, DirtyBitmap: uint64(uintptr(unsafe.Pointer(&bitmap[0])))}
	_, errno := ioctlPtr(v.fd.Int(), _KVM_GET_DIRTY_LOG, &log)
	// The kernel wrote through the address inside log, so bitmap must stay
	// reachable until the call returned.
	keepAlive(bitmap)
	return wrap("KVM_GET_DIRTY_LOG", fmt.Sprintf("vm memslot %d", slot), errno)
}

// IRQLine sets the level of an interrupt line. On arm64 irq encodes the
// type, vCPU index and number (KVM_ARM_IRQ_*).
func (v *VM) IRQLine(irq uint32, level bool) error {
	arg := irqLevel{IRQ: irq}
	if level {
		arg.Level = 1
	}
	_, errno := ioctlPtr(v.fd.Int(), _KVM_IRQ_LINE, &arg)
	return wrap("KVM_IRQ_LINE", fmt.Sprintf("vm irq %#x", irq), errno)
}

// IRQFD makes writes to eventFD raise interrupt gsi.
func (v *VM) IRQFD(eventFD int, gsi uint32) error {
	arg := irqfd{FD: uint32(eventFD), GSI: gsi}
	_, errno := ioctlPtr(v.fd.Int(), _KVM_IRQFD, &arg)
	return wrap("KVM_IRQFD", fmt.Sprintf("vm gsi %d", gsi), errno)
}

// EnableCap enables a VM capability with its arguments.
func (v *VM) EnableCap(cap uint32, args ...uint64) error {
	arg := enableCap{Cap: cap}
	copy(arg.Args[:], args)
	_, errno := ioctlPtr(v.fd.Int(), _KVM_ENABLE_CAP, &arg)
	return wrap("KVM_ENABLE_CAP", fmt.Sprintf("vm cap %d", cap), errno)
}

// CreateDevice creates an in-kernel device such as the vGIC.
func (v *VM) CreateDevice(deviceType uint32) (*Device, error) {
	arg := createDevice{Type: deviceType}
	_, errno := ioctlPtr(v.fd.Int(), _KVM_CREATE_DEVICE, &arg)
	if err := wrap("KVM_CREATE_DEVICE", fmt.Sprintf("vm device type %d", deviceType), errno); err != nil {
		return nil, err
	}
	return &Device{fd: newFD(int(arg.FD)), name: fmt.Sprintf("device type %d", deviceType)}, nil
}

// CreateVCPU creates vCPU index and maps its kvm_run area.
func (v *VM) CreateVCPU(index int) (*VCPU, error) {
	r, errno := ioctl(v.fd.Int(), _KVM_CREATE_VCPU, uintptr(index))
	if err := wrap("KVM_CREATE_VCPU", fmt.Sprintf("vcpu %d", index), errno); err != nil {
		return nil, err
	}
	c := &VCPU{fd: newFD(int(r)), index: index}
	if err := c.mapRun(v.runSize); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// PreferredTarget returns the vCPU target and features that KVM recommends
// for this host (KVM_ARM_PREFERRED_TARGET, arm64 only).
func (v *VM) PreferredTarget() (VCPUInit, error) {
	var init VCPUInit
	_, errno := ioctlPtr(v.fd.Int(), _KVM_ARM_PREFERRED_TARGET, &init)
	return init, wrap("KVM_ARM_PREFERRED_TARGET", "vm", errno)
}
