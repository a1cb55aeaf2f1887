package kvm

import "fmt"

// ioctl request numbers from include/uapi/linux/kvm.h (Linux 6.1). They use
// the generic _IOC encoding that arm64 and amd64 share: direction in bits
// 30-31, argument size in bits 16-29, type 0xAE in bits 8-15 and the number
// in bits 0-7. TestIoctlSizes checks every size field against the Go mirror
// of its struct.
const (
	// System ioctls, on the /dev/kvm descriptor.
	_KVM_GET_API_VERSION    = 0xAE00
	_KVM_CREATE_VM          = 0xAE01
	_KVM_CHECK_EXTENSION    = 0xAE03
	_KVM_GET_VCPU_MMAP_SIZE = 0xAE04

	// VM ioctls.
	_KVM_ARM_PREFERRED_TARGET   = 0x8020AEAF // _IOR(0xAE, 0xaf, struct kvm_vcpu_init)
	_KVM_CREATE_VCPU            = 0xAE41
	_KVM_GET_DIRTY_LOG          = 0x4010AE42 // _IOW(0xAE, 0x42, struct kvm_dirty_log)
	_KVM_SET_USER_MEMORY_REGION = 0x4020AE46 // _IOW(0xAE, 0x46, struct kvm_userspace_memory_region)
	_KVM_IRQ_LINE               = 0x4008AE61 // _IOW(0xAE, 0x61, struct kvm_irq_level)
	_KVM_IRQFD                  = 0x4020AE76 // _IOW(0xAE, 0x76, struct kvm_irqfd)
	_KVM_IOEVENTFD              = 0x4040AE79 // _IOW(0xAE, 0x79, struct kvm_ioeventfd)
	_KVM_ENABLE_CAP             = 0x4068AEA3 // _IOW(0xAE, 0xa3, struct kvm_enable_cap)
	_KVM_CREATE_DEVICE          = 0xC00CAEE0 // _IOWR(0xAE, 0xe0, struct kvm_create_device)

	// Device ioctls, on a descriptor from KVM_CREATE_DEVICE.
	_KVM_SET_DEVICE_ATTR = 0x4018AEE1 // _IOW(0xAE, 0xe1, struct kvm_device_attr)
	_KVM_GET_DEVICE_ATTR = 0x4018AEE2 // _IOW(0xAE, 0xe2, struct kvm_device_attr)
	_KVM_HAS_DEVICE_ATTR = 0x4018AEE3 // _IOW(0xAE, 0xe3, struct kvm_device_attr)

	// vCPU ioctls.
	_KVM_RUN             = 0xAE80
	_KVM_GET_MP_STATE    = 0x8004AE98 // _IOR(0xAE, 0x98, struct kvm_mp_state)
	_KVM_SET_MP_STATE    = 0x4004AE99 // _IOW(0xAE, 0x99, struct kvm_mp_state)
	_KVM_GET_VCPU_EVENTS = 0x8040AE9F // _IOR(0xAE, 0x9f, struct kvm_vcpu_events)
	_KVM_SET_VCPU_EVENTS = 0x4040AEA0 // _IOW(0xAE, 0xa0, struct kvm_vcpu_events)
	_KVM_GET_ONE_REG     = 0x4010AEAB // _IOW(0xAE, 0xab, struct kvm_one_reg)
	_KVM_SET_ONE_REG     = 0x4010AEAC // _IOW(0xAE, 0xac, struct kvm_one_reg)
	_KVM_ARM_VCPU_INIT   = 0x4020AEAE // _IOW(0xAE, 0xae, struct kvm_vcpu_init)
	_KVM_GET_REG_LIST    = 0xC008AEB0 // _IOWR(0xAE, 0xb0, struct kvm_reg_list)
)

// APIVersion is the only KVM API version the kernel has ever reported.
const APIVersion = 12

// Capabilities queried with KVM_CHECK_EXTENSION.
const (
	CapIRQChip                = 0
	CapUserMemory             = 3
	CapIOEventFD              = 36
	CapIRQFD                  = 32
	CapOneReg                 = 70
	CapARMPSCI                = 87
	CapARMPSCI02              = 102
	CapDeviceCtrl             = 89
	CapMaxVCPUs               = 66
	CapNrMemslots             = 10
	CapARMVMIPASize           = 165
	CapImmediateExit          = 136
	CapManualDirtyLogProtect2 = 168
)

// Exit reasons in kvm_run.exit_reason.
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitInternalError = 17
	ExitSystemEvent   = 24
	ExitARMNISV       = 28
)

// Device types for KVM_CREATE_DEVICE.
const (
	DeviceARMVGICv3 = 7
	DeviceARMITS    = 8
)

// memslot flags for SetUserMemoryRegion.
const (
	MemLogDirtyPages = 1 << 0
	MemReadonly      = 1 << 1
)

// exitNames are the kernel's names of the exit reasons spore handles or
// reports.
var exitNames = map[uint32]string{
	ExitUnknown:       "UNKNOWN",
	ExitException:     "EXCEPTION",
	ExitIO:            "IO",
	ExitHypercall:     "HYPERCALL",
	ExitDebug:         "DEBUG",
	ExitHLT:           "HLT",
	ExitMMIO:          "MMIO",
	ExitShutdown:      "SHUTDOWN",
	ExitFailEntry:     "FAIL_ENTRY",
	ExitIntr:          "INTR",
	ExitInternalError: "INTERNAL_ERROR",
	ExitSystemEvent:   "SYSTEM_EVENT",
	ExitARMNISV:       "ARM_NISV",
}

// ExitName returns the name of a kvm_run exit reason without the KVM_EXIT_
// prefix, or its number for reasons spore does not know.
func ExitName(reason uint32) string {
	if name, ok := exitNames[reason]; ok {
		return name
	}
	return fmt.Sprintf("%d", reason)
}
