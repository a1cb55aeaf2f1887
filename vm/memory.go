package vm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// guestRAM is the host mapping of guest RAM, which KVM sees as memslot 0 at
// arm64.RAMBase.
type guestRAM struct {
	// mem is the mapping; its pages are allocated on first touch.
	mem []byte
	// base is the guest physical address of mem[0].
	base uint64
}

// ramSlot is the memslot number of guest RAM.
const ramSlot = 0

func newGuestRAM(base, size uint64) (*guestRAM, error) {
	// MAP_NORESERVE: a guest that never touches most of its RAM should not
	// be charged for it against the host's overcommit limit.
	mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("map %d MiB of guest RAM: %w", size>>20, err)
	}
	return &guestRAM{mem: mem, base: base}, nil
}

// newSharedGuestRAM maps a shared backing privately as guest RAM.
func newSharedGuestRAM(base uint64, shared *SharedMemory) (*guestRAM, error) {
	mem, err := shared.mapPrivate()
	if err != nil {
		return nil, err
	}
	return &guestRAM{mem: mem, base: base}, nil
}

// hostAddr returns the host virtual address of guest RAM's first byte.
func (r *guestRAM) hostAddr() uintptr { return uintptr(unsafe.Pointer(&r.mem[0])) }

func (r *guestRAM) size() uint64 { return uint64(len(r.mem)) }

// slice returns guest RAM at [addr, addr+length), or an error naming the
// range when it is not inside RAM.
func (r *guestRAM) slice(addr, length uint64) ([]byte, error) {
	if addr < r.base || length > r.size() || addr-r.base > r.size()-length {
		return nil, fmt.Errorf("guest range [%#x, +%#x) is outside RAM [%#x, +%#x)", addr, length, r.base, r.size())
	}
	off := addr - r.base
	return r.mem[off : off+length], nil
}

func (r *guestRAM) close() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return err
}
