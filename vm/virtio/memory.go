package virtio

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
)

// PageSize is the granularity of Memory's dirty set in bytes.
const PageSize = 4096

// ErrOutsideRAM is matched by errors.Is for every *AccessError.
var ErrOutsideRAM = errors.New("guest address range is outside RAM")

// AccessError reports a guest memory access that does not lie entirely
// inside RAM or that is misaligned for an atomic access.
type AccessError struct {
	// Op is the kind of access: "read", "write" or "atomic access".
	Op string
	// Addr and Len describe the guest-physical range that was requested.
	Addr, Len uint64
	// Base and Size describe guest RAM.
	Base, Size uint64
	// Misaligned is true when the range is inside RAM but Addr is not
	// aligned for an atomic access.
	Misaligned bool
}

func (e *AccessError) Error() string {
	if e.Misaligned {
		return fmt.Sprintf("guest memory %s of %d bytes at %#x is not aligned to %d bytes", e.Op, e.Len, e.Addr, e.Len)
	}
	return fmt.Sprintf("guest memory %s of %d bytes at %#x is outside RAM [%#x, %#x)",
		e.Op, e.Len, e.Addr, e.Base, e.Base+e.Size)
}

// Is makes errors.Is(err, ErrOutsideRAM) true for range errors.
func (e *AccessError) Is(target error) bool { return target == ErrOutsideRAM && !e.Misaligned }

// Memory is guest RAM as the device side accesses it: one contiguous
// mapping at a guest-physical base address. Every access is bounds-checked, so no
// guest-supplied address can make it panic or touch host memory outside the
// mapping.
//
// Memory records every page that the device side writes in a dirty set,
// which capture merges with KVM's dirty log. All methods are safe for
// concurrent use.
type Memory struct {
	base  uint64
	data  []byte
	dirty []atomic.Uint64 // bit i of word w is the page at base+(64*w+i)*PageSize
	// prefault, when set, runs before every access that touches data, so
	// that RAM restored lazily is filled before the device reads or writes
	// it. Set once before the devices run.
	prefault func(off, length uint64) error
}

// SetPrefault installs a function that makes [off, off+length) of RAM
// present before the device side touches it. A VMM that fills guest RAM
// lazily through userfaultfd needs it: a Go goroutine that faulted on a
// missing page would block its thread where the Go runtime cannot preempt
// it, and the fault handler, also Go code, could then wait forever for a
// garbage collection that waits for that thread. Call it before any device
// runs.
func (m *Memory) SetPrefault(f func(off, length uint64) error) { m.prefault = f }

// access checks an access like offset and makes the range present.
func (m *Memory) access(op string, addr, length uint64) (uint64, error) {
	off, err := m.offset(op, addr, length)
	if err != nil || m.prefault == nil || length == 0 {
		return off, err
	}
	if err := m.prefault(off, length); err != nil {
		return 0, fmt.Errorf("%s guest memory at %#x: %w", op, addr, err)
	}
	return off, nil
}

// NewMemory returns a Memory over data, which is mapped in the guest at the
// guest-physical address base. The base and the length of data must be
// multiples of PageSize, and data must be 8-byte aligned in host memory
// (any mmap or large allocation is), because ring indices are accessed with
// atomic operations.
func NewMemory(base uint64, data []byte) (*Memory, error) {
	size := uint64(len(data))
	if size == 0 {
		return nil, errors.New("virtio: guest RAM is empty; pass the RAM mapping")
	}
	if base%PageSize != 0 || size%PageSize != 0 {
		return nil, fmt.Errorf("virtio: guest RAM base %#x and size %#x must be multiples of %d", base, size, PageSize)
	}
	if base+size < base {
		return nil, fmt.Errorf("virtio: guest RAM [%#x, +%#x) wraps around the 64-bit address space", base, size)
	}
	if !aligned8(data) {
		return nil, errors.New("virtio: guest RAM mapping is not 8-byte aligned in host memory; use an mmap'd region")
	}
	pages := size / PageSize
	return &Memory{
		base:  base,
		data:  data,
		dirty: make([]atomic.Uint64, (pages+63)/64),
	}, nil
}

// Base returns the guest-physical address of the first byte of RAM.
func (m *Memory) Base() uint64 { return m.base }

// Size returns the size of RAM in bytes.
func (m *Memory) Size() uint64 { return uint64(len(m.data)) }

// offset translates a guest-physical range to an offset into data. The
// comparisons are arranged so that no sum can overflow.
func (m *Memory) offset(op string, addr, length uint64) (uint64, error) {
	size := uint64(len(m.data))
	if addr < m.base || addr-m.base > size || length > size-(addr-m.base) {
		return 0, &AccessError{Op: op, Addr: addr, Len: length, Base: m.base, Size: size}
	}
	return addr - m.base, nil
}

// Check returns an *AccessError unless [addr, addr+length) lies inside RAM.
func (m *Memory) Check(addr, length uint64) error {
	_, err := m.offset("access", addr, length)
	return err
}

// Read copies len(p) bytes of guest memory at addr into p.
func (m *Memory) Read(addr uint64, p []byte) error {
	off, err := m.access("read", addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, m.data[off:])
	return nil
}

// Write copies p into guest memory at addr and marks the pages dirty.
func (m *Memory) Write(addr uint64, p []byte) error {
	off, err := m.access("write", addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(m.data[off:], p)
	m.markDirty(off, uint64(len(p)))
	return nil
}

// Slice returns the guest memory at [addr, addr+length) for reading. The
// slice aliases guest RAM, whose contents the guest may change at any time.
// Callers must not write through it; use WritableSlice for that.
func (m *Memory) Slice(addr, length uint64) ([]byte, error) {
	off, err := m.access("read", addr, length)
	if err != nil {
		return nil, err
	}
	return m.data[off : off+length : off+length], nil
}

// WritableSlice returns the guest memory at [addr, addr+length) for writing
// and marks its pages dirty before returning.
func (m *Memory) WritableSlice(addr, length uint64) ([]byte, error) {
	off, err := m.access("write", addr, length)
	if err != nil {
		return nil, err
	}
	m.markDirty(off, length)
	return m.data[off : off+length : off+length], nil
}

// MarkDirty adds the pages of [addr, addr+length) to the dirty set. Use it
// when the VMM writes guest memory by other means than this type.
func (m *Memory) MarkDirty(addr, length uint64) error {
	off, err := m.offset("write", addr, length)
	if err != nil {
		return err
	}
	m.markDirty(off, length)
	return nil
}

func (m *Memory) markDirty(off, length uint64) {
	if length == 0 {
		return
	}
	first := off / PageSize
	last := (off + length - 1) / PageSize
	for page := first; page <= last; page++ {
		word, bit := page/64, page%64
		mask := uint64(1) << bit
		if m.dirty[word].Load()&mask == 0 {
			m.dirty[word].Or(mask)
		}
	}
}

// TakeDirtyBitmap returns the dirty set and clears it. Bit i of word w is
// set when the page at Base()+(64*w+i)*PageSize was written since the last
// call, which is the layout of KVM's dirty log for one memslot. Pages
// written while the call runs end up in either this result or the next.
func (m *Memory) TakeDirtyBitmap() []uint64 {
	out := make([]uint64, len(m.dirty))
	for i := range m.dirty {
		out[i] = m.dirty[i].Swap(0)
	}
	return out
}

// TakeDirtyPages returns the guest-physical addresses of the dirty pages in
// ascending order and clears the dirty set.
func (m *Memory) TakeDirtyPages() []uint64 {
	var pages []uint64
	for w, word := range m.TakeDirtyBitmap() {
		for word != 0 {
			bit := uint64(bits.TrailingZeros64(word))
			word &^= 1 << bit
			pages = append(pages, m.base+(uint64(w)*64+bit)*PageSize)
		}
	}
	return pages
}
