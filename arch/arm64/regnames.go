package arm64

import "fmt"

// regGroupSysreg is the KVM register group of AArch64 system registers,
// whose index is the register's encoding (see SysregEncoding).
const regGroupSysreg = 0x0013 << 16

// SysregEncoding returns the encoding of an AArch64 system register,
// op0<<14 | op1<<11 | CRn<<7 | CRm<<3 | op2, as KVM's register IDs and vGIC
// device attributes use it.
func SysregEncoding(op0, op1, crn, crm, op2 uint64) uint64 {
	return op0<<14 | op1<<11 | crn<<7 | crm<<3 | op2
}

// SysregID returns the KVM register ID of the 64-bit system register with
// the given encoding.
func SysregID(encoding uint64) uint64 {
	return regARM64 | regSizeU64 | regGroupSysreg | encoding
}

// sysregNames names the system registers a reader of a vCPU dump looks for
// first; others print in the generic S<op0>_<op1>_C<n>_C<m>_<op2> form.
var sysregNames = map[uint64]string{
	0xc000: "MIDR_EL1", 0xc005: "MPIDR_EL1", 0xc080: "SCTLR_EL1", 0xc082: "CPACR_EL1",
	0xc100: "TTBR0_EL1", 0xc101: "TTBR1_EL1", 0xc102: "TCR_EL1", 0xc200: "SPSR_EL1",
	0xc201: "ELR_EL1", 0xc208: "SP_EL0", 0xc288: "AFSR0_EL1", 0xc290: "ESR_EL1",
	0xc300: "FAR_EL1", 0xc3a0: "PAR_EL1", 0xc510: "MAIR_EL1", 0xc518: "AMAIR_EL1",
	0xc600: "VBAR_EL1", 0xc681: "CONTEXTIDR_EL1", 0xc684: "TPIDR_EL1", 0xc708: "CNTKCTL_EL1",
	0xde82: "TPIDR_EL0", 0xde83: "TPIDRRO_EL0", 0xdf11: "CNTP_CTL_EL0", 0xdf12: "CNTP_CVAL_EL0",
	timerCTLEncoding: "KVM_REG_ARM_TIMER_CTL", timerCNTEncoding: "KVM_REG_ARM_TIMER_CNT", timerCVALEncoding: "KVM_REG_ARM_TIMER_CVAL",
	0xc020: "ID_AA64PFR0_EL1", 0xc021: "ID_AA64PFR1_EL1", 0xc030: "ID_AA64ISAR0_EL1",
	0xc031: "ID_AA64ISAR1_EL1", 0xc038: "ID_AA64MMFR0_EL1", 0xc039: "ID_AA64MMFR1_EL1",
	0xc665: "ICC_SRE_EL1", 0xc664: "ICC_CTLR_EL1", 0xc230: "ICC_PMR_EL1",
	0xc643: "ICC_BPR0_EL1", 0xc663: "ICC_BPR1_EL1", 0xc666: "ICC_IGRPEN0_EL1", 0xc667: "ICC_IGRPEN1_EL1",
}

// SysregName returns the name of a system register by its encoding
// (op0<<14 | op1<<11 | CRn<<7 | CRm<<3 | op2).
func SysregName(enc uint64) string {
	if name, ok := sysregNames[enc]; ok {
		return name
	}
	return fmt.Sprintf("S%d_%d_C%d_C%d_%d", enc>>14&3, enc>>11&7, enc>>7&15, enc>>3&15, enc&7)
}

// RegName returns a readable name for a KVM register ID: x0-x30, sp, pc,
// pstate and the other core registers, v0-v31, system registers by name, or
// the ID in hex for the rest (firmware and SVE registers).
func RegName(id uint64) string {
	switch id {
	case RegPC:
		return "pc"
	case RegPSTATE:
		return "pstate"
	case RegSP:
		return "sp_el0"
	case RegSPEL1:
		return "sp_el1"
	case RegELREL1:
		return "elr_el1"
	case RegFPSR:
		return "fpsr"
	case RegFPCR:
		return "fpcr"
	}
	group := id & 0xffff0000 &^ regSizeMask
	index := id & 0xffff
	switch {
	case group == regGroupCore && index < 31*2 && index%2 == 0:
		return fmt.Sprintf("x%d", index/2)
	case group == regGroupCore && index >= coreOffSPSR/4 && index < coreOffSPSR/4+10 && index%2 == 0:
		return fmt.Sprintf("spsr[%d]", (index-coreOffSPSR/4)/2)
	case group == regGroupCore && index >= coreOffVRegs/4 && index < coreOffFPSR/4:
		return fmt.Sprintf("v%d", (index-coreOffVRegs/4)/4)
	case group == regGroupSysreg:
		return SysregName(index)
	}
	return fmt.Sprintf("%#x", id)
}
