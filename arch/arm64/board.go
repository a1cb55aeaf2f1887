package arm64

import (
	"fmt"

	"github.com/spore-vm/spore/arch/arm64/fdt"
)

// BoardVersion names the memory map and device layout below. A commit
// records it, and restore rejects a commit made on another board version.
const BoardVersion = 1

// The board's guest physical memory map. Everything below RAMBase is MMIO;
// the layout follows QEMU's virt machine where that costs nothing, so the
// addresses look familiar in a kernel log.
const (
	// GICDistBase is the GICv3 distributor, 64 KiB.
	GICDistBase = 0x08000000
	GICDistSize = 0x10000
	// GICRedistBase is the first GICv3 redistributor; each vCPU has one of
	// GICRedistSizePerCPU bytes (RD_base and SGI_base frames).
	GICRedistBase       = 0x080A0000
	GICRedistSizePerCPU = 0x20000
	// MaxVCPUs is bounded by the redistributor space before PL011Base.
	MaxVCPUs = (PL011Base - GICRedistBase) / GICRedistSizePerCPU

	// PL011Base is the UART used for early boot output.
	PL011Base = 0x09000000
	PL011Size = 0x1000
	// PL011SPI is the UART's shared peripheral interrupt number.
	PL011SPI = 1

	// VirtioBase is the first virtio-mmio window; device n sits at
	// VirtioBase + n*VirtioStride with interrupt SPI VirtioFirstSPI + n.
	VirtioBase     = 0x0A000000
	VirtioStride   = 0x1000
	VirtioSize     = 0x200
	VirtioFirstSPI = 16
	MaxVirtio      = 32

	// RAMBase is where guest RAM starts. It is 2 MiB aligned, as the arm64
	// boot protocol requires of the kernel's load base.
	RAMBase = 0x40000000
)

// GIC interrupt specifier values for the FDT (include/dt-bindings).
const (
	gicSPI         = 0
	gicPPI         = 1
	irqLevelHigh   = 4
	gicPhandle     = 1
	clockPhandle   = 2
	apbClockHz     = 24000000
	timerPPISecure = 13
	timerPPIPhys   = 14
	timerPPIVirt   = 11
	timerPPIHyp    = 10
)

// VirtioDevice is one virtio-mmio window in the FDT.
type VirtioDevice struct {
	// Index selects the window: base VirtioBase + Index*VirtioStride.
	Index int
}

// Base returns the device's MMIO base address.
func (d VirtioDevice) Base() uint64 { return VirtioBase + uint64(d.Index)*VirtioStride }

// SPI returns the device's shared peripheral interrupt number.
func (d VirtioDevice) SPI() uint32 { return VirtioFirstSPI + uint32(d.Index) }

// Board is the hardware description of one VM.
type Board struct {
	MemoryBytes uint64
	VCPUs       int
	Cmdline     string
	// InitrdStart and InitrdEnd are the guest physical range of the initrd;
	// both zero means no initrd.
	InitrdStart, InitrdEnd uint64
	// KASLRSeed and RNGSeed seed the kernel's address randomization and its
	// entropy pool at boot.
	KASLRSeed uint64
	RNGSeed   []byte
	Virtio    []VirtioDevice
}

// Validate checks the board against the memory map's limits.
func (b *Board) Validate() error {
	switch {
	case b.VCPUs < 1 || b.VCPUs > MaxVCPUs:
		return fmt.Errorf("invalid vCPU count %d: use 1 to %d", b.VCPUs, MaxVCPUs)
	case b.MemoryBytes < 64<<20:
		return fmt.Errorf("invalid memory size %d bytes: use at least 64 MiB", b.MemoryBytes)
	case b.MemoryBytes%(2<<20) != 0:
		return fmt.Errorf("invalid memory size %d bytes: use a multiple of 2 MiB", b.MemoryBytes)
	case len(b.Virtio) > MaxVirtio:
		return fmt.Errorf("%d virtio devices, the board has room for %d", len(b.Virtio), MaxVirtio)
	case b.InitrdEnd < b.InitrdStart:
		return fmt.Errorf("initrd ends at %#x before it starts at %#x", b.InitrdEnd, b.InitrdStart)
	}
	return nil
}

// MPIDR returns the affinity value KVM gives vCPU index: Aff0 counts 16
// vCPUs per cluster and Aff1 numbers the clusters.
func MPIDR(index int) uint64 {
	return uint64(index%16) | uint64(index/16)<<8
}

// DeviceTree returns the FDT blob that describes the board to the kernel.
func (b *Board) DeviceTree() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	var t fdt.Builder

	t.BeginNode("")
	t.PropertyStrings("compatible", "spore,board-v1", "linux,dummy-virt")
	t.PropertyString("model", "spore arm64 board")
	t.PropertyU32("#address-cells", 2)
	t.PropertyU32("#size-cells", 2)
	t.PropertyU32("interrupt-parent", gicPhandle)

	b.addCPUs(&t)

	t.BeginNode("psci")
	t.PropertyStrings("compatible", "arm,psci-1.0", "arm,psci-0.2")
	t.PropertyString("method", "hvc")
	t.EndNode()

	t.BeginNode(fmt.Sprintf("memory@%x", RAMBase))
	t.PropertyString("device_type", "memory")
	t.PropertyU64("reg", RAMBase, b.MemoryBytes)
	t.EndNode()

	t.BeginNode(fmt.Sprintf("intc@%x", GICDistBase))
	t.PropertyStrings("compatible", "arm,gic-v3")
	t.PropertyU32("#interrupt-cells", 3)
	t.PropertyEmpty("interrupt-controller")
	t.PropertyU64("reg", GICDistBase, GICDistSize, GICRedistBase, uint64(b.VCPUs)*GICRedistSizePerCPU)
	t.PropertyU32("phandle", gicPhandle)
	t.EndNode()

	t.BeginNode("timer")
	t.PropertyStrings("compatible", "arm,armv8-timer", "arm,armv7-timer")
	t.PropertyU32("interrupts",
		gicPPI, timerPPISecure, irqLevelHigh,
		gicPPI, timerPPIPhys, irqLevelHigh,
		gicPPI, timerPPIVirt, irqLevelHigh,
		gicPPI, timerPPIHyp, irqLevelHigh)
	t.PropertyEmpty("always-on")
	t.EndNode()

	t.BeginNode("apb-pclk")
	t.PropertyStrings("compatible", "fixed-clock")
	t.PropertyU32("#clock-cells", 0)
	t.PropertyU32("clock-frequency", apbClockHz)
	t.PropertyString("clock-output-names", "clk24mhz")
	t.PropertyU32("phandle", clockPhandle)
	t.EndNode()

	t.BeginNode(fmt.Sprintf("pl011@%x", PL011Base))
	t.PropertyStrings("compatible", "arm,pl011", "arm,primecell")
	t.PropertyU64("reg", PL011Base, PL011Size)
	t.PropertyU32("interrupts", gicSPI, PL011SPI, irqLevelHigh)
	t.PropertyU32("clocks", clockPhandle, clockPhandle)
	t.PropertyStrings("clock-names", "uartclk", "apb_pclk")
	t.EndNode()

	for _, d := range b.Virtio {
		t.BeginNode(fmt.Sprintf("virtio_mmio@%x", d.Base()))
		t.PropertyStrings("compatible", "virtio,mmio")
		t.PropertyU64("reg", d.Base(), VirtioSize)
		t.PropertyU32("interrupts", gicSPI, d.SPI(), irqLevelHigh)
		t.PropertyEmpty("dma-coherent")
		t.EndNode()
	}

	b.addChosen(&t)
	t.EndNode()
	return t.Finish()
}

func (b *Board) addCPUs(t *fdt.Builder) {
	t.BeginNode("cpus")
	t.PropertyU32("#address-cells", 1)
	t.PropertyU32("#size-cells", 0)
	for i := 0; i < b.VCPUs; i++ {
		t.BeginNode(fmt.Sprintf("cpu@%x", MPIDR(i)))
		t.PropertyString("device_type", "cpu")
		t.PropertyStrings("compatible", "arm,arm-v8")
		t.PropertyString("enable-method", "psci")
		t.PropertyU32("reg", uint32(MPIDR(i)))
		t.EndNode()
	}
	t.EndNode()
}

func (b *Board) addChosen(t *fdt.Builder) {
	t.BeginNode("chosen")
	t.PropertyString("bootargs", b.Cmdline)
	t.PropertyString("stdout-path", fmt.Sprintf("/pl011@%x", PL011Base))
	if b.InitrdEnd > b.InitrdStart {
		t.PropertyU64("linux,initrd-start", b.InitrdStart)
		t.PropertyU64("linux,initrd-end", b.InitrdEnd)
	}
	t.PropertyU64("kaslr-seed", b.KASLRSeed)
	if len(b.RNGSeed) > 0 {
		t.Property("rng-seed", b.RNGSeed)
	}
	t.EndNode()
}
