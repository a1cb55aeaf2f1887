package vm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/spore-vm/spore/arch/arm64"
	"github.com/spore-vm/spore/vm/kvm"
)

// GICState is the in-kernel GICv3's state: distributor registers, each
// vCPU's redistributor and CPU interface registers, and the line levels of
// level-triggered SPIs.
type GICState struct {
	// Dist holds 32-bit distributor registers by offset.
	Dist []GICRegister
	// Redist holds each vCPU's 32-bit redistributor registers by offset
	// (RD_base, then SGI_base at +0x10000).
	Redist [][]GICRegister
	// CPUInterface holds each vCPU's 64-bit ICC_*_EL1 registers, keyed by
	// their system register encoding.
	CPUInterface [][]GICRegister
	// LineLevels holds the line level bitmaps of SPIs, 32 interrupts per
	// entry, keyed by the first interrupt ID.
	LineLevels []GICRegister
}

// GICRegister is one vGIC register, addressed as KVM's device attributes
// address it.
type GICRegister struct {
	Key   uint64
	Value uint64
}

// mpidrShift places a vCPU's affinity in a vGIC device attribute.
const mpidrShift = 32

// Register ranges that clear state when written (ICENABLER, ICPENDR,
// ICACTIVER) in the distributor and in the redistributor's SGI frame. A
// restore into a fresh vGIC only writes their set counterparts.
var gicClearRanges = [][2]uint64{
	{0x0180, 0x0200}, {0x0280, 0x0300}, {0x0380, 0x0400},
	{0x10180, 0x10200}, {0x10280, 0x10300}, {0x10380, 0x10400},
}

func isGICClearRegister(offset uint64) bool {
	for _, r := range gicClearRanges {
		if offset >= r[0] && offset < r[1] {
			return true
		}
	}
	return false
}

// iccRegisters are the CPU interface registers by system register encoding
// (op0<<14 | op1<<11 | CRn<<7 | CRm<<3 | op2). SRE and CTLR come first
// because the others depend on them.
var iccRegisters = []uint64{
	sysreg(3, 0, 12, 12, 5),                                                                        // ICC_SRE_EL1
	sysreg(3, 0, 12, 12, 4),                                                                        // ICC_CTLR_EL1
	sysreg(3, 0, 4, 6, 0),                                                                          // ICC_PMR_EL1
	sysreg(3, 0, 12, 8, 3),                                                                         // ICC_BPR0_EL1
	sysreg(3, 0, 12, 12, 3),                                                                        // ICC_BPR1_EL1
	sysreg(3, 0, 12, 8, 4), sysreg(3, 0, 12, 8, 5), sysreg(3, 0, 12, 8, 6), sysreg(3, 0, 12, 8, 7), // ICC_AP0R0-3_EL1
	sysreg(3, 0, 12, 9, 0), sysreg(3, 0, 12, 9, 1), sysreg(3, 0, 12, 9, 2), sysreg(3, 0, 12, 9, 3), // ICC_AP1R0-3_EL1
	sysreg(3, 0, 12, 12, 6), // ICC_IGRPEN0_EL1
	sysreg(3, 0, 12, 12, 7), // ICC_IGRPEN1_EL1
}

func sysreg(op0, op1, crn, crm, op2 uint64) uint64 {
	return arm64.SysregEncoding(op0, op1, crn, crm, op2)
}

// saveGIC reads the vGIC state. The vCPUs must be parked.
func (m *Machine) saveGIC() (GICState, error) {
	var s GICState
	var err error
	if s.Dist, err = readGICRange(m.gic, kvm.VGICGroupDistRegs, 0, arm64.GICDistSize); err != nil {
		return s, err
	}
	for i := range m.vcpus {
		mpidr := arm64.MPIDR(i) << mpidrShift
		redist, err := readGICRange(m.gic, kvm.VGICGroupRedistRegs, mpidr, arm64.GICRedistSizePerCPU)
		if err != nil {
			return s, err
		}
		s.Redist = append(s.Redist, redist)

		var icc []GICRegister
		for _, reg := range iccRegisters {
			if !m.gic.HasAttr(kvm.VGICGroupCPUSysregs, mpidr|reg) {
				continue
			}
			var v uint64
			err := m.gic.GetAttr(kvm.VGICGroupCPUSysregs, mpidr|reg, &v)
			if errors.Is(err, unix.EINVAL) {
				// ICC_AP0Rn/AP1Rn beyond the implemented priority bits
				// are listed by HAS_ATTR but cannot be read.
				continue
			}
			if err != nil {
				return s, fmt.Errorf("read vGIC CPU register %#x of vcpu %d: %w", reg, i, err)
			}
			icc = append(icc, GICRegister{Key: reg, Value: v})
		}
		s.CPUInterface = append(s.CPUInterface, icc)
	}
	for intid := uint64(kvm.SPIBase); intid < gicIRQs; intid += 32 {
		var v uint64
		if err := m.gic.GetAttr(kvm.VGICGroupLevelInfo, intid, &v); err != nil {
			return s, fmt.Errorf("read vGIC line levels from interrupt %d: %w", intid, err)
		}
		s.LineLevels = append(s.LineLevels, GICRegister{Key: intid, Value: v & 0xffffffff})
	}
	return s, nil
}

// readGICRange reads every 32-bit register KVM implements in [0, size) of a
// register group. KVM_HAS_DEVICE_ATTR reports which offsets exist.
func readGICRange(gic *kvm.Device, group uint32, prefix uint64, size uint64) ([]GICRegister, error) {
	var regs []GICRegister
	for off := uint64(0); off < size; off += 4 {
		if !gic.HasAttr(group, prefix|off) {
			continue
		}
		var v uint64
		if err := gic.GetAttr(group, prefix|off, &v); err != nil {
			return nil, fmt.Errorf("read vGIC register group %d offset %#x: %w", group, off, err)
		}
		regs = append(regs, GICRegister{Key: off, Value: v & 0xffffffff})
	}
	return regs, nil
}

// restoreGIC writes a saved state into a fresh vGIC of the same shape.
func (m *Machine) restoreGIC(s GICState) error {
	if len(s.Redist) != len(m.vcpus) || len(s.CPUInterface) != len(m.vcpus) {
		return fmt.Errorf("vGIC state has %d redistributors, the VM has %d vCPUs", len(s.Redist), len(m.vcpus))
	}
	if err := writeGICRegisters(m.gic, kvm.VGICGroupDistRegs, 0, s.Dist, true); err != nil {
		return err
	}
	for i := range m.vcpus {
		mpidr := arm64.MPIDR(i) << mpidrShift
		if err := writeGICRegisters(m.gic, kvm.VGICGroupRedistRegs, mpidr, s.Redist[i], true); err != nil {
			return err
		}
		if err := writeGICRegisters(m.gic, kvm.VGICGroupCPUSysregs, mpidr, s.CPUInterface[i], false); err != nil {
			return err
		}
	}
	return writeGICRegisters(m.gic, kvm.VGICGroupLevelInfo, 0, s.LineLevels, false)
}

// writeGICRegisters writes registers, skipping the clear-on-write ranges of
// MMIO groups. A write KVM rejects is accepted when the register already
// holds the value, as read-only ID registers do.
func writeGICRegisters(gic *kvm.Device, group uint32, prefix uint64, regs []GICRegister, mmio bool) error {
	for _, r := range regs {
		if mmio && isGICClearRegister(r.Key) {
			continue
		}
		v := r.Value
		if err := gic.SetAttr(group, prefix|r.Key, &v); err != nil {
			var current uint64
			if getErr := gic.GetAttr(group, prefix|r.Key, &current); getErr == nil && current&0xffffffff == r.Value&0xffffffff {
				continue
			}
			return fmt.Errorf("restore vGIC register group %d key %#x: %w", group, r.Key, err)
		}
	}
	return nil
}
