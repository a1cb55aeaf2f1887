package kvm

// Mirrors of the kernel structs that KVM ioctls take. Field order, sizes and
// padding follow include/uapi/linux/kvm.h and arch/arm64/include/uapi/asm/kvm.h
// (Linux 6.1); TestIoctlSizes pins each size to its ioctl number.

// userspaceMemoryRegion mirrors struct kvm_userspace_memory_region.
type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// dirtyLog mirrors struct kvm_dirty_log. The kernel writes one bit per page
// of the memslot to the bitmap at DirtyBitmap.
type dirtyLog struct {
	Slot        uint32
	_           uint32
	DirtyBitmap uint64
}

// irqLevel mirrors struct kvm_irq_level.
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// irqfd mirrors struct kvm_irqfd.
type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

// ioeventfd mirrors struct kvm_ioeventfd.
type ioeventfd struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// enableCap mirrors struct kvm_enable_cap.
type enableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}

// createDevice mirrors struct kvm_create_device.
type createDevice struct {
	Type  uint32
	FD    uint32
	Flags uint32
}

// DeviceAttr mirrors struct kvm_device_attr. Addr is the user address of the
// value, which the kernel reads or writes.
type DeviceAttr struct {
	Flags uint32
	Group uint32
	Attr  uint64
	Addr  uint64
}

// mpState mirrors struct kvm_mp_state.
type mpState struct {
	State uint32
}

// VCPUEvents mirrors the arm64 layout of struct kvm_vcpu_events: a pending
// SError and its syndrome, plus reserved words the kernel requires be zero.
type VCPUEvents struct {
	SErrorPending  uint8
	SErrorHasESR   uint8
	ExtDabtPending uint8
	_              [5]uint8
	SErrorESR      uint64
	_              [12]uint32
}

// oneReg mirrors struct kvm_one_reg: a register ID and the user address of
// its value.
type oneReg struct {
	ID   uint64
	Addr uint64
}

// VCPUInit mirrors struct kvm_vcpu_init: the target CPU type and a bitmap
// of optional features (KVM_ARM_VCPU_*).
type VCPUInit struct {
	Target   uint32
	Features [7]uint32
}

// regListHeader mirrors the fixed part of struct kvm_reg_list; the kernel
// writes N register IDs right after it.
type regListHeader struct {
	N uint64
}
