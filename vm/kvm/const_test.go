package kvm

import (
	"testing"
	"unsafe"

	sysioctl "github.com/spore-vm/spore/vm/internal/ioctl"
)

// TestIoctlSizes checks that the size encoded in each ioctl number matches
// the Go mirror of its argument struct, so a wrong field or padding fails
// here instead of corrupting memory in the kernel.
func TestIoctlSizes(t *testing.T) {
	cases := []struct {
		name    string
		request uintptr
		size    uintptr
	}{
		{"KVM_ARM_PREFERRED_TARGET", _KVM_ARM_PREFERRED_TARGET, unsafe.Sizeof(VCPUInit{})},
		{"KVM_GET_DIRTY_LOG", _KVM_GET_DIRTY_LOG, unsafe.Sizeof(dirtyLog{})},
		{"KVM_SET_USER_MEMORY_REGION", _KVM_SET_USER_MEMORY_REGION, unsafe.Sizeof(userspaceMemoryRegion{})},
		{"KVM_IRQ_LINE", _KVM_IRQ_LINE, unsafe.Sizeof(irqLevel{})},
		{"KVM_IRQFD", _KVM_IRQFD, unsafe.Sizeof(irqfd{})},
		{"KVM_IOEVENTFD", _KVM_IOEVENTFD, unsafe.Sizeof(ioeventfd{})},
		{"KVM_ENABLE_CAP", _KVM_ENABLE_CAP, unsafe.Sizeof(enableCap{})},
		{"KVM_CREATE_DEVICE", _KVM_CREATE_DEVICE, unsafe.Sizeof(createDevice{})},
		{"KVM_SET_DEVICE_ATTR", _KVM_SET_DEVICE_ATTR, unsafe.Sizeof(DeviceAttr{})},
		{"KVM_GET_DEVICE_ATTR", _KVM_GET_DEVICE_ATTR, unsafe.Sizeof(DeviceAttr{})},
		{"KVM_HAS_DEVICE_ATTR", _KVM_HAS_DEVICE_ATTR, unsafe.Sizeof(DeviceAttr{})},
		{"KVM_GET_MP_STATE", _KVM_GET_MP_STATE, unsafe.Sizeof(mpState{})},
		{"KVM_SET_MP_STATE", _KVM_SET_MP_STATE, unsafe.Sizeof(mpState{})},
		{"KVM_GET_VCPU_EVENTS", _KVM_GET_VCPU_EVENTS, unsafe.Sizeof(VCPUEvents{})},
		{"KVM_SET_VCPU_EVENTS", _KVM_SET_VCPU_EVENTS, unsafe.Sizeof(VCPUEvents{})},
		{"KVM_GET_ONE_REG", _KVM_GET_ONE_REG, unsafe.Sizeof(oneReg{})},
		{"KVM_SET_ONE_REG", _KVM_SET_ONE_REG, unsafe.Sizeof(oneReg{})},
		{"KVM_ARM_VCPU_INIT", _KVM_ARM_VCPU_INIT, unsafe.Sizeof(VCPUInit{})},
		{"KVM_GET_REG_LIST", _KVM_GET_REG_LIST, unsafe.Sizeof(regListHeader{})},
	}
	for _, c := range cases {
		if got := sysioctl.Size(c.request); got != c.size {
			t.Errorf("%s (%#x) encodes %d bytes, Go struct has %d", c.name, c.request, got, c.size)
		}
	}
}

// TestIoctlNumbersWithoutArgument checks the ioctls that take no struct:
// their size field must be zero and their type byte KVMIO (0xAE).
func TestIoctlNumbersWithoutArgument(t *testing.T) {
	for name, request := range map[string]uintptr{
		"KVM_GET_API_VERSION":    _KVM_GET_API_VERSION,
		"KVM_CREATE_VM":          _KVM_CREATE_VM,
		"KVM_CHECK_EXTENSION":    _KVM_CHECK_EXTENSION,
		"KVM_GET_VCPU_MMAP_SIZE": _KVM_GET_VCPU_MMAP_SIZE,
		"KVM_CREATE_VCPU":        _KVM_CREATE_VCPU,
		"KVM_RUN":                _KVM_RUN,
	} {
		if size := sysioctl.Size(request); size != 0 {
			t.Errorf("%s (%#x) encodes an argument of %d bytes, want none", name, request, size)
		}
		if typ := (request >> 8) & 0xff; typ != 0xAE {
			t.Errorf("%s (%#x) has type %#x, want 0xae", name, request, typ)
		}
	}
}

func TestCheckRegSize(t *testing.T) {
	const pc = 0x6030000000100040 // KVM_REG_ARM64 | KVM_REG_SIZE_U64 | core reg pc
	if err := checkRegSize(pc, 8); err != nil {
		t.Errorf("8-byte buffer for 64-bit register: %v", err)
	}
	if err := checkRegSize(pc, 16); err == nil {
		t.Error("16-byte buffer for 64-bit register: no error")
	}
}
