package virtio

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

func aligned8(data []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(data)))%8 == 0
}

// word returns the aligned 32-bit word of RAM that contains the 16-bit
// value at addr. NewMemory guarantees that data is 8-byte aligned and a
// multiple of PageSize long, so the word lies inside data whenever the
// 2-byte range does.
func (m *Memory) word(addr uint64) (*uint32, uint64, error) {
	off, err := m.access("atomic access", addr, 2)
	if err != nil {
		return nil, 0, err
	}
	if addr%2 != 0 {
		return nil, 0, &AccessError{Op: "atomic access", Addr: addr, Len: 2, Base: m.base, Size: m.Size(), Misaligned: true}
	}
	return (*uint32)(unsafe.Pointer(&m.data[off&^3])), off, nil
}

// LoadUint16 atomically reads the little-endian 16-bit value at addr, which
// must be 2-byte aligned. The load has acquire ordering, so reads of guest
// memory after it see what the guest wrote before it published the value
// (for example the ring entries before the available index).
func (m *Memory) LoadUint16(addr uint64) (uint16, error) {
	p, off, err := m.word(addr)
	if err != nil {
		return 0, err
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], atomic.LoadUint32(p))
	return binary.LittleEndian.Uint16(b[off&3:]), nil
}

// StoreUint16 atomically writes v as a little-endian 16-bit value at addr,
// which must be 2-byte aligned, and marks the page dirty. The store has
// release ordering, so the guest observes every earlier write (for example
// a used ring entry) before it observes v. The other half of the containing
// 32-bit word is preserved even if the guest writes it concurrently.
func (m *Memory) StoreUint16(addr uint64, v uint16) error {
	p, off, err := m.word(addr)
	if err != nil {
		return err
	}
	m.markDirty(off, 2)
	for {
		old := atomic.LoadUint32(p)
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], old)
		binary.LittleEndian.PutUint16(b[off&3:], v)
		if atomic.CompareAndSwapUint32(p, old, binary.NativeEndian.Uint32(b[:])) {
			return nil
		}
	}
}
