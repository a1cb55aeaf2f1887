package vm

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/spore-vm/spore/arch/arm64"
	"github.com/spore-vm/spore/vm/kvm"
)

// pstateEL1h is the PSTATE a vCPU boots with: EL1 using SP_EL1, with debug,
// SError, IRQ and FIQ masked, as the arm64 boot protocol requires.
const pstateEL1h = 0x3c5

// vcpu is one virtual CPU and the OS thread that runs it.
type vcpu struct {
	index int
	kvm   *kvm.VCPU
	// tid is the thread running the vCPU loop, 0 before it started. It is
	// written once by that thread and read by kick.
	tid atomic.Int32
	// exits counts KVM exits by reason name, for --debug output. Only the
	// vCPU's own thread touches it.
	exits map[string]uint64
}

// createVCPUs creates and initializes every vCPU. All but vCPU 0 start
// powered off until the kernel wakes them with PSCI CPU_ON.
func (m *Machine) createVCPUs() error {
	init, err := m.vm.PreferredTarget()
	if err != nil {
		return err
	}
	for i := 0; i < m.cfg.VCPUs; i++ {
		kc, err := m.vm.CreateVCPU(i)
		if err != nil {
			return err
		}
		c := &vcpu{index: i, kvm: kc, exits: map[string]uint64{}}
		m.vcpus = append(m.vcpus, c)

		features := init
		features.Features[0] |= 1 << arm64.FeaturePSCI02
		if i > 0 {
			features.Features[0] |= 1 << arm64.FeaturePowerOff
		}
		if err := kc.Init(features); err != nil {
			return err
		}
	}
	return nil
}

// setBootRegisters starts vCPU 0 at the kernel entry with x0 pointing at
// the device tree, as the arm64 boot protocol requires.
func (m *Machine) setBootRegisters(layout bootLayout) error {
	boot := m.vcpus[0].kvm
	regs := []struct {
		id    uint64
		value uint64
	}{
		{arm64.RegPSTATE, pstateEL1h},
		{arm64.RegPC, layout.kernelAddr},
		{arm64.RegX(0), layout.fdtAddr},
		{arm64.RegX(1), 0},
		{arm64.RegX(2), 0},
		{arm64.RegX(3), 0},
	}
	for _, r := range regs {
		if err := boot.SetOneReg(r.id, r.value); err != nil {
			return fmt.Errorf("set boot register: %w", err)
		}
	}
	return nil
}

// loop runs the vCPU on a locked OS thread until the machine stops.
func (c *vcpu) loop(m *Machine) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c.tid.Store(int32(unix.Gettid()))

	for {
		select {
		case <-m.stopped:
			m.logger.Debug("vCPU stopped", "vcpu", c.index, "exits_by_reason", c.exits)
			return
		default:
		}

		reason, err := c.kvm.Run()
		if errors.Is(err, unix.EINTR) {
			c.kvm.SetImmediateExit(false)
			if m.pause.isRequested() {
				m.pause.park(m.stopped)
			}
			continue
		}
		if err != nil {
			m.stop(0, fmt.Errorf("vcpu %d: %w", c.index, err))
			continue
		}
		c.exits[kvm.ExitName(reason)]++
		c.handleExit(m, reason)
	}
}

func (c *vcpu) handleExit(m *Machine, reason uint32) {
	switch reason {
	case kvm.ExitMMIO:
		mmio := c.kvm.MMIO()
		data := mmio.Data[:mmio.Len]
		m.bus.dispatch(mmio.PhysAddr, data, mmio.IsWrite, c.index)
		if !mmio.IsWrite {
			c.kvm.SetMMIOData(data)
		}

	case kvm.ExitSystemEvent:
		event := c.kvm.SystemEvent()
		m.logger.Debug("guest system event", "vcpu", c.index, "type", event.Type)
		switch event.Type {
		case kvm.SystemEventShutdown:
			m.stop(ExitPowerOff, nil)
		case kvm.SystemEventReset:
			m.stop(ExitReset, nil)
		default:
			m.stop(ExitCrash, nil)
		}

	case kvm.ExitFailEntry:
		m.stop(0, fmt.Errorf("vcpu %d: KVM_EXIT_FAIL_ENTRY, hardware reason %#x", c.index, c.kvm.FailEntryReason()))

	case kvm.ExitInternalError:
		m.stop(0, fmt.Errorf("vcpu %d: KVM internal error, suberror %d", c.index, c.kvm.InternalError()))

	default:
		pc, _ := c.kvm.GetOneReg(arm64.RegPC)
		m.stop(0, fmt.Errorf("vcpu %d: unexpected KVM exit %s at pc %#x", c.index, kvm.ExitName(reason), pc))
	}
}

// kick makes the vCPU leave KVM_RUN soon: immediate_exit stops it from
// entering the guest again, and a signal interrupts a KVM_RUN in progress.
// SIGURG is the signal the Go runtime itself uses to preempt threads, so
// its handler ignores a stray one.
func (c *vcpu) kick() {
	c.kvm.SetImmediateExit(true)
	if tid := c.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}
