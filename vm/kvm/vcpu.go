package kvm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VCPU is a KVM vCPU handle with its mapped kvm_run area.
//
// KVM requires that KVM_RUN and register access for a vCPU come from one
// thread at a time; callers pin the goroutine that runs it with
// runtime.LockOSThread.
type VCPU struct {
	fd    *fd
	index int
	// run is the kvm_run mapping shared with the kernel. It is valid from
	// CreateVCPU until Close.
	run []byte
}

// Index returns the vCPU index given to CreateVCPU.
func (c *VCPU) Index() int { return c.index }

// FD returns the raw vCPU descriptor, valid until Close.
func (c *VCPU) FD() int { return c.fd.Int() }

func (c *VCPU) name() string { return fmt.Sprintf("vcpu %d", c.index) }

func (c *VCPU) mapRun(size int) error {
	run, err := unix.Mmap(c.fd.Int(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap kvm_run of %s: %w", c.name(), err)
	}
	c.run = run
	return nil
}

// Close unmaps kvm_run and closes the vCPU descriptor. The vCPU must not be
// running.
func (c *VCPU) Close() error {
	if c.run != nil {
		unix.Munmap(c.run)
		c.run = nil
	}
	return c.fd.Close()
}

// Init initializes the vCPU with KVM_ARM_VCPU_INIT. It must be called once
// before the first Run and before register access.
func (c *VCPU) Init(init VCPUInit) error {
	_, errno := ioctlPtr(c.fd.Int(), _KVM_ARM_VCPU_INIT, &init)
	return wrap("KVM_ARM_VCPU_INIT", c.name(), errno)
}

// Run enters the guest until the next exit and returns the exit reason.
// EINTR is returned as an *Error, not retried, because it is how another
// thread kicks a vCPU out of the guest with a signal.
func (c *VCPU) Run() (uint32, error) {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd.Int()), _KVM_RUN, 0)
	if err := wrap("KVM_RUN", c.name(), errno); err != nil {
		return 0, err
	}
	return c.ExitReason(), nil
}

// GetOneReg reads the 64-bit register id.
func (c *VCPU) GetOneReg(id uint64) (uint64, error) {
	var value uint64
	err := c.GetOneRegBytes(id, unsafe.Slice((*byte)(unsafe.Pointer(&value)), 8))
	return value, err
}

// SetOneReg writes the 64-bit register id.
func (c *VCPU) SetOneReg(id uint64, value uint64) error {
	return c.SetOneRegBytes(id, unsafe.Slice((*byte)(unsafe.Pointer(&value)), 8))
}

// GetOneRegBytes reads register id into buf, which must be exactly as long as
// the size encoded in id (bits 52-55: 1 << n bytes).
func (c *VCPU) GetOneRegBytes(id uint64, buf []byte) error {
	if err := checkRegSize(id, len(buf)); err != nil {
		return fmt.Errorf("%s: %w", c.name(), err)
	}
	arg := oneReg{ID: id, Addr: uint64(uintptr(unsafe.Pointer(&buf[0])))}
	_, errno := ioctlPtr(c.fd.Int(), _KVM_GET_ONE_REG, &arg)
	keepAlive(buf)
	return wrap("KVM_GET_ONE_REG", fmt.Sprintf("%s reg %#x", c.name(), id), errno)
}

// SetOneRegBytes writes buf to register id; see GetOneRegBytes for the size.
func (c *VCPU) SetOneRegBytes(id uint64, buf []byte) error {
	if err := checkRegSize(id, len(buf)); err != nil {
		return fmt.Errorf("%s: %w", c.name(), err)
	}
	arg := oneReg{ID: id, Addr: uint64(uintptr(unsafe.Pointer(&buf[0])))}
	_, errno := ioctlPtr(c.fd.Int(), _KVM_SET_ONE_REG, &arg)
	keepAlive(buf)
	return wrap("KVM_SET_ONE_REG", fmt.Sprintf("%s reg %#x", c.name(), id), errno)
}

// RegList returns the IDs of every register that KVM_GET_ONE_REG accepts for
// this vCPU.
func (c *VCPU) RegList() ([]uint64, error) {
	// The first call with N=0 fails with E2BIG and reports the count.
	var probe regListHeader
	_, errno := ioctlPtr(c.fd.Int(), _KVM_GET_REG_LIST, &probe)
	if errno != unix.E2BIG && errno != 0 {
		return nil, wrap("KVM_GET_REG_LIST", c.name(), errno)
	}

	buf := make([]uint64, 1+probe.N)
	buf[0] = probe.N
	_, errno = ioctlPtr(c.fd.Int(), _KVM_GET_REG_LIST, &buf[0])
	keepAlive(buf)
	if err := wrap("KVM_GET_REG_LIST", c.name(), errno); err != nil {
		return nil, err
	}
	return buf[1 : 1+buf[0]], nil
}

// MPState returns the vCPU's multiprocessing state (KVM_MP_STATE_*).
func (c *VCPU) MPState() (uint32, error) {
	var s mpState
	_, errno := ioctlPtr(c.fd.Int(), _KVM_GET_MP_STATE, &s)
	return s.State, wrap("KVM_GET_MP_STATE", c.name(), errno)
}

// SetMPState sets the vCPU's multiprocessing state.
func (c *VCPU) SetMPState(state uint32) error {
	s := mpState{State: state}
	_, errno := ioctlPtr(c.fd.Int(), _KVM_SET_MP_STATE, &s)
	return wrap("KVM_SET_MP_STATE", c.name(), errno)
}

// Events returns pending exception state (KVM_GET_VCPU_EVENTS).
func (c *VCPU) Events() (VCPUEvents, error) {
	var e VCPUEvents
	_, errno := ioctlPtr(c.fd.Int(), _KVM_GET_VCPU_EVENTS, &e)
	return e, wrap("KVM_GET_VCPU_EVENTS", c.name(), errno)
}

// SetEvents restores pending exception state (KVM_SET_VCPU_EVENTS).
func (c *VCPU) SetEvents(e VCPUEvents) error {
	_, errno := ioctlPtr(c.fd.Int(), _KVM_SET_VCPU_EVENTS, &e)
	return wrap("KVM_SET_VCPU_EVENTS", c.name(), errno)
}

// checkRegSize returns an error unless n matches the size encoded in id.
func checkRegSize(id uint64, n int) error {
	want := 1 << ((id >> 52) & 0xf)
	if n != want {
		return fmt.Errorf("register %#x is %d bytes, buffer has %d", id, want, n)
	}
	return nil
}
