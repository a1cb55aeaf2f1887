package kvm

// vGIC device attribute groups and values for an in-kernel GICv3 created
// with KVM_CREATE_DEVICE (arch/arm64/include/uapi/asm/kvm.h, Linux 6.1).
const (
	VGICGroupAddr        = 0
	VGICGroupDistRegs    = 1
	VGICGroupNrIRQs      = 3
	VGICGroupCtrl        = 4
	VGICGroupRedistRegs  = 5
	VGICGroupCPUSysregs  = 6
	VGICGroupLevelInfo   = 7
	VGICV3AddrTypeDist   = 2
	VGICV3AddrTypeRedist = 3
	VGICCtrlInit         = 0
	// VGICCtrlSavePendingTables writes the LPI pending tables to guest RAM.
	VGICCtrlSavePendingTables = 3
)

// IRQ line encoding of KVM_IRQ_LINE on arm64: type in bits 24-27, vCPU
// index in bits 16-23 (per-CPU interrupts only), interrupt ID in bits 0-15.
const (
	irqTypeShift = 24
	irqTypeSPI   = 1
	// SPIBase is the interrupt ID of SPI 0.
	SPIBase = 32
)

// SPILine returns the KVM_IRQ_LINE argument for shared peripheral
// interrupt spi (0-based, so SPI 0 is interrupt ID 32).
func SPILine(spi uint32) uint32 {
	return irqTypeSPI<<irqTypeShift | (SPIBase + spi)
}
