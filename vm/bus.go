package vm

import (
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
)

// MMIODevice serves guest accesses to its MMIO window. offset is relative
// to the window's base; data is the bytes to write, or the buffer to fill on
// a read. It is called from vCPU threads, possibly several at once.
type MMIODevice interface {
	HandleMMIO(offset uint64, data []byte, isWrite bool)
}

// mmioRange is one device window on the bus.
type mmioRange struct {
	base, size uint64
	name       string
	dev        MMIODevice
}

// bus routes MMIO exits to the device whose window contains the address.
// It is built before the vCPUs start and read-only afterwards.
type bus struct {
	ranges []mmioRange
	// unhandled counts accesses that hit no device, for --debug output.
	unhandled atomic.Uint64
	logger    *slog.Logger
}

// add registers a device window. Windows must not overlap.
func (b *bus) add(name string, base, size uint64, dev MMIODevice) error {
	for _, r := range b.ranges {
		if base < r.base+r.size && r.base < base+size {
			return fmt.Errorf("MMIO window of %s [%#x, +%#x) overlaps %s [%#x, +%#x)", name, base, size, r.name, r.base, r.size)
		}
	}
	b.ranges = append(b.ranges, mmioRange{base: base, size: size, name: name, dev: dev})
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
	return nil
}

// dispatch serves one access. Accesses that hit no device read as zero and
// drop writes, which is what a guest probing absent hardware expects.
func (b *bus) dispatch(addr uint64, data []byte, isWrite bool, vcpu int) {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base+b.ranges[i].size > addr })
	if i < len(b.ranges) && addr >= b.ranges[i].base && addr+uint64(len(data)) <= b.ranges[i].base+b.ranges[i].size {
		r := b.ranges[i]
		r.dev.HandleMMIO(addr-r.base, data, isWrite)
		return
	}

	if !isWrite {
		clear(data)
	}
	// Log the first few only: a guest polling absent hardware would
	// otherwise flood the log.
	if n := b.unhandled.Add(1); n <= 16 {
		b.logger.Debug("MMIO access hit no device", "vcpu", vcpu, "addr", fmt.Sprintf("%#x", addr), "len", len(data), "write", isWrite, "count", n)
	}
}
