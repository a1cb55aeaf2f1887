package vm

import (
	"fmt"

	"github.com/spore-vm/spore/arch/arm64"
	"github.com/spore-vm/spore/vm/kvm"
)

// gicIRQs is the number of interrupt IDs the vGIC implements: the 32
// private ones plus SPIs. It must be a multiple of 32 and cover the board's
// highest SPI.
const gicIRQs = 128

// createGIC creates the in-kernel GICv3 at the board's addresses. It must
// run after every vCPU was created and initialized, because CTRL_INIT sizes
// the redistributors for the vCPUs that exist.
func createGIC(vm *kvm.VM) (*kvm.Device, error) {
	gic, err := vm.CreateDevice(kvm.DeviceARMVGICv3)
	if err != nil {
		return nil, fmt.Errorf("create vGICv3 (the host needs a GICv3 with KVM support): %w", err)
	}

	dist := uint64(arm64.GICDistBase)
	redist := uint64(arm64.GICRedistBase)
	irqs := uint64(gicIRQs)
	steps := []struct {
		what  string
		group uint32
		attr  uint64
		value *uint64
	}{
		{"distributor address", kvm.VGICGroupAddr, kvm.VGICV3AddrTypeDist, &dist},
		{"redistributor address", kvm.VGICGroupAddr, kvm.VGICV3AddrTypeRedist, &redist},
		{"interrupt count", kvm.VGICGroupNrIRQs, 0, &irqs},
		{"initialization", kvm.VGICGroupCtrl, kvm.VGICCtrlInit, nil},
	}
	for _, s := range steps {
		if err := gic.SetAttr(s.group, s.attr, s.value); err != nil {
			gic.Close()
			return nil, fmt.Errorf("set vGICv3 %s: %w", s.what, err)
		}
	}
	return gic, nil
}
