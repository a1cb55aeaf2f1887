package vm

import (
	"fmt"

	"github.com/spore-vm/spore/arch/arm64"
)

// bootLayout is the placement of the kernel, initrd and device tree in
// guest RAM.
type bootLayout struct {
	kernelAddr  uint64
	kernelEnd   uint64
	initrdStart uint64
	initrdEnd   uint64
	fdtAddr     uint64
}

// fdtMaxSize is the largest device tree the arm64 boot protocol accepts.
const fdtMaxSize = 2 << 20

// planBoot places the kernel at the start of RAM (plus its text offset),
// the device tree in the last 2 MiB, and the initrd right below the device
// tree, page aligned.
func planBoot(ramSize uint64, header arm64.ImageHeader, kernelFileSize int, initrdSize int) (bootLayout, error) {
	var l bootLayout
	l.kernelAddr = arm64.RAMBase + header.TextOffset
	l.kernelEnd = l.kernelAddr + header.LoadSize(kernelFileSize)
	l.fdtAddr = arm64.RAMBase + ramSize - fdtMaxSize

	l.initrdEnd = l.fdtAddr
	l.initrdStart = (l.initrdEnd - uint64(initrdSize)) &^ 0xfff
	if initrdSize == 0 {
		l.initrdStart, l.initrdEnd = 0, 0
	}

	lowest := l.fdtAddr
	if initrdSize > 0 {
		lowest = l.initrdStart
	}
	if l.kernelEnd > lowest || uint64(initrdSize) > ramSize {
		return l, fmt.Errorf("guest memory of %d MiB is too small for a %d MiB kernel and a %d MiB initrd; raise the memory size",
			ramSize>>20, (l.kernelEnd-l.kernelAddr)>>20, initrdSize>>20)
	}
	return l, nil
}

// load copies the kernel, initrd and device tree into guest RAM.
func (l bootLayout) load(ram *guestRAM, kernel, initrd, fdt []byte) error {
	if len(fdt) > fdtMaxSize {
		return fmt.Errorf("device tree is %d bytes, more than the %d the boot protocol allows", len(fdt), fdtMaxSize)
	}
	parts := []struct {
		name string
		addr uint64
		data []byte
	}{
		{"kernel", l.kernelAddr, kernel},
		{"initrd", l.initrdStart, initrd},
		{"device tree", l.fdtAddr, fdt},
	}
	for _, p := range parts {
		if len(p.data) == 0 {
			continue
		}
		dst, err := ram.slice(p.addr, uint64(len(p.data)))
		if err != nil {
			return fmt.Errorf("load %s: %w", p.name, err)
		}
		copy(dst, p.data)
	}
	return nil
}
