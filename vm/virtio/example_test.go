package virtio_test

import (
	"io"
	"log"
	"os"

	"github.com/spore-vm/spore/vm/virtio"
)

// irqLine is a placeholder for the VMM's interrupt wiring, for example
// KVM_IRQ_LINE on a level-triggered SPI of the GIC.
type irqLine struct{ spi int }

func (l irqLine) SetLevel(asserted bool) {
	// The VMM sets the line of SPI l.spi to asserted here.
}

// Example wires a console and a disk the way the VMM core does. It has no
// Output line, so go test compiles it but does not run it.
func Example() {
	// Guest RAM at 0x8000_0000; in the VMM this is the mmap'd memslot.
	ram := make([]byte, 256<<20)
	mem, err := virtio.NewMemory(0x8000_0000, ram)
	if err != nil {
		log.Fatal(err)
	}

	console, err := virtio.NewConsole(virtio.DefaultConsolePorts(), nil)
	if err != nil {
		log.Fatal(err)
	}
	consoleMMIO, err := virtio.NewTransport(console, mem, irqLine{spi: 16}, nil)
	if err != nil {
		log.Fatal(err)
	}
	// Linux spins until the host takes each console buffer: always drain
	// port 0.
	go io.Copy(os.Stdout, console.Port(0))

	disk, err := virtio.OpenFileBacking("rootfs.img", true)
	if err != nil {
		log.Fatal(err)
	}
	blk, err := virtio.NewBlock(virtio.BlockConfig{Backing: disk, ReadOnly: true, ID: "root"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	blkMMIO, err := virtio.NewTransport(blk, mem, irqLine{spi: 17}, nil)
	if err != nil {
		log.Fatal(err)
	}

	// The vCPU loop routes an MMIO exit at addr to the device whose
	// window contains it; the FDT describes both windows as
	// compatible = "virtio,mmio".
	windows := map[uint64]*virtio.Transport{0x0a00_0000: consoleMMIO, 0x0a00_0200: blkMMIO}
	handleExit := func(addr uint64, data []byte, isWrite bool) {
		base := addr &^ (virtio.WindowSize - 1)
		if t, ok := windows[base]; ok {
			t.HandleMMIO(addr-base, data, isWrite)
		}
	}
	_ = handleExit

	// At capture, with the vCPUs paused: device state plus the pages the
	// devices wrote, to merge with KVM's dirty log.
	state, err := consoleMMIO.Save()
	if err != nil {
		log.Fatal(err)
	}
	encoded, err := state.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	dirty := mem.TakeDirtyBitmap()
	_, _ = encoded, dirty
}
