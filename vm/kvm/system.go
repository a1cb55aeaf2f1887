package kvm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DevicePath is the KVM system device.
const DevicePath = "/dev/kvm"

// System is an open /dev/kvm handle, used to query capabilities and create
// VMs.
type System struct {
	fd *fd
}

// Open opens /dev/kvm read-write and checks the API version.
func Open() (*System, error) {
	raw, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", DevicePath, err)
	}
	s := &System{fd: newFD(raw)}

	version, err := s.APIVersion()
	if err != nil {
		s.Close()
		return nil, err
	}
	if version != APIVersion {
		s.Close()
		return nil, fmt.Errorf("%s reports KVM API version %d, spore needs %d", DevicePath, version, APIVersion)
	}
	return s, nil
}

// Close closes /dev/kvm. VMs created from it stay valid.
func (s *System) Close() error { return s.fd.Close() }

// APIVersion returns the result of KVM_GET_API_VERSION.
func (s *System) APIVersion() (int, error) {
	r, errno := ioctl(s.fd.Int(), _KVM_GET_API_VERSION, 0)
	if err := wrap("KVM_GET_API_VERSION", DevicePath, errno); err != nil {
		return 0, err
	}
	return int(r), nil
}

// CheckExtension returns the value of KVM_CHECK_EXTENSION for capability
// cap: 0 when unsupported, otherwise 1 or a capability-specific number.
func (s *System) CheckExtension(cap int) (int, error) {
	r, errno := ioctl(s.fd.Int(), _KVM_CHECK_EXTENSION, uintptr(cap))
	if err := wrap("KVM_CHECK_EXTENSION", DevicePath, errno); err != nil {
		return 0, err
	}
	return int(r), nil
}

// VCPUMmapSize returns the size of the kvm_run area that each vCPU maps.
func (s *System) VCPUMmapSize() (int, error) {
	r, errno := ioctl(s.fd.Int(), _KVM_GET_VCPU_MMAP_SIZE, 0)
	if err := wrap("KVM_GET_VCPU_MMAP_SIZE", DevicePath, errno); err != nil {
		return 0, err
	}
	return int(r), nil
}

// CreateVM creates a VM. machineType is 0 for the default, or on arm64
// the IPA size in bits (KVM_VM_TYPE_ARM_IPA_SIZE) when the host supports
// CapARMVMIPASize.
func (s *System) CreateVM(machineType int) (*VM, error) {
	mmapSize, err := s.VCPUMmapSize()
	if err != nil {
		return nil, err
	}
	r, errno := ioctl(s.fd.Int(), _KVM_CREATE_VM, uintptr(machineType))
	if err := wrap("KVM_CREATE_VM", DevicePath, errno); err != nil {
		return nil, err
	}
	return &VM{fd: newFD(int(r)), runSize: mmapSize}, nil
}
