package arm64

import "fmt"

// KVM register IDs for KVM_GET_ONE_REG and KVM_SET_ONE_REG, from
// arch/arm64/include/uapi/asm/kvm.h and include/uapi/linux/kvm.h. An ID
// encodes the architecture (bits 56-63), the value size (bits 52-55, log2 of
// bytes), the register group (bits 16-31) and an index within it.
const (
	regARM64    = 0x6000000000000000
	regSizeU32  = 0x0020000000000000
	regSizeU64  = 0x0030000000000000
	regSizeU128 = 0x0040000000000000
	regSizeMask = 0x00f0000000000000

	// regGroupCore addresses struct kvm_regs by offset in 32-bit words.
	regGroupCore = 0x0010 << 16
)

// Byte offsets of fields in struct kvm_regs. user_pt_regs comes first: x0 to
// x30, sp (SP_EL0), pc and pstate; then sp_el1, elr_el1, five saved SPSRs and
// the FP/SIMD state, which is 16-byte aligned.
const (
	coreOffX0     = 0
	coreOffSP     = 31 * 8
	coreOffPC     = 32 * 8
	coreOffPSTATE = 33 * 8
	coreOffSPEL1  = 34 * 8
	coreOffELREL1 = 35 * 8
	coreOffSPSR   = 36 * 8
	coreOffVRegs  = 42 * 8 // 328 rounded up to 16-byte alignment is 336
	coreOffFPSR   = coreOffVRegs + 32*16
	coreOffFPCR   = coreOffFPSR + 4
)

// coreReg returns the ID of the core register at byte offset off with the
// given size flag.
func coreReg(size uint64, off uint64) uint64 {
	return regARM64 | size | regGroupCore | off/4
}

// Core register IDs.
var (
	// RegPC is the program counter.
	RegPC = coreReg(regSizeU64, coreOffPC)
	// RegPSTATE is the processor state (the SPSR layout of the current EL).
	RegPSTATE = coreReg(regSizeU64, coreOffPSTATE)
	// RegSP is SP_EL0.
	RegSP = coreReg(regSizeU64, coreOffSP)
	// RegSPEL1 is SP_EL1, the kernel stack pointer.
	RegSPEL1 = coreReg(regSizeU64, coreOffSPEL1)
	// RegELREL1 is ELR_EL1, the exception return address.
	RegELREL1 = coreReg(regSizeU64, coreOffELREL1)
	// RegFPSR and RegFPCR are the floating-point status and control
	// registers, 32 bits each.
	RegFPSR = coreReg(regSizeU32, coreOffFPSR)
	RegFPCR = coreReg(regSizeU32, coreOffFPCR)
)

// Encodings of KVM's virtual timer registers in the system register
// group. They swap the ones of CNTV_CVAL_EL0 and CNTVCT_EL0, a quirk the
// kernel keeps for ABI compatibility (arch/arm64/include/uapi/asm/kvm.h).
const (
	timerCTLEncoding  = 0xdf19
	timerCNTEncoding  = 0xdf1a
	timerCVALEncoding = 0xdf02
)

// KVM's virtual timer register IDs.
var (
	// RegTimerCTL is CNTV_CTL_EL0.
	RegTimerCTL = SysregID(timerCTLEncoding)
	// RegTimerCNT is the virtual counter, CNTVCT_EL0. Writing it sets the
	// counter offset of every vCPU of the VM.
	RegTimerCNT = SysregID(timerCNTEncoding)
	// RegTimerCVAL is CNTV_CVAL_EL0.
	RegTimerCVAL = SysregID(timerCVALEncoding)
)

// RegX returns the ID of general-purpose register xN, for N in 0..30.
func RegX(n int) uint64 {
	if n < 0 || n > 30 {
		panic(fmt.Sprintf("arm64: no general-purpose register x%d", n))
	}
	return coreReg(regSizeU64, coreOffX0+uint64(n)*8)
}

// RegSPSR returns the ID of saved program status register n (0..4: EL1,
// abort, undefined, IRQ, FIQ).
func RegSPSR(n int) uint64 {
	if n < 0 || n > 4 {
		panic(fmt.Sprintf("arm64: no SPSR %d", n))
	}
	return coreReg(regSizeU64, coreOffSPSR+uint64(n)*8)
}

// RegV returns the ID of the 128-bit SIMD register vN, for N in 0..31.
func RegV(n int) uint64 {
	if n < 0 || n > 31 {
		panic(fmt.Sprintf("arm64: no SIMD register v%d", n))
	}
	return coreReg(regSizeU128, coreOffVRegs+uint64(n)*16)
}

// RegSize returns the size in bytes of the register an ID names.
func RegSize(id uint64) int {
	return 1 << ((id & regSizeMask) >> 52)
}

// vCPU features for kvm.VCPUInit.Features[0] (KVM_ARM_VCPU_*).
const (
	// FeaturePowerOff starts the vCPU powered off, waiting for PSCI CPU_ON.
	FeaturePowerOff = 0
	// FeaturePSCI02 gives the vCPU PSCI 0.2 or newer instead of 0.1.
	FeaturePSCI02 = 2
)
