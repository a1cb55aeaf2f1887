package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Descriptor flags of a split virtqueue (virtq_desc.flags).
const (
	descFlagNext     = 1
	descFlagWrite    = 2
	descFlagIndirect = 4

	descSize = 16
)

// Sentinel errors of the descriptor chain walker, matched with errors.Is on
// the *ChainError that wraps them.
var (
	ErrDescriptorLoop     = errors.New("descriptor chain loops back to a descriptor it already visited")
	ErrChainTooLong       = errors.New("descriptor chain is longer than the queue size")
	ErrDescriptorIndex    = errors.New("descriptor index is out of range")
	ErrDescriptorOrder    = errors.New("device-readable descriptor follows a device-writable one")
	ErrIndirectDescriptor = errors.New("invalid indirect descriptor")
	ErrBufferOutsideRAM   = errors.New("descriptor buffer is outside RAM")
)

// ChainError describes a descriptor chain that breaks the split virtqueue
// rules. It wraps one of the Err* sentinels of this file.
type ChainError struct {
	Queue    int    // virtqueue index
	Head     uint16 // head descriptor index taken from the available ring
	Index    uint16 // index of the offending descriptor in its table
	Indirect bool   // the offending descriptor is in an indirect table
	Detail   string // the values that broke the rule
	Err      error  // one of the Err* sentinels
}

func (e *ChainError) Error() string {
	table := "descriptor table"
	if e.Indirect {
		table = "indirect table"
	}
	msg := fmt.Sprintf("virtqueue %d: chain with head %d: entry %d of the %s: %v", e.Queue, e.Head, e.Index, table, e.Err)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

func (e *ChainError) Unwrap() error { return e.Err }

// Buffer is one guest buffer of a descriptor chain. The walker checked that
// [Addr, Addr+Len) lies inside RAM.
type Buffer struct {
	Addr uint64
	Len  uint32
}

// Chain is one request popped from a virtqueue: the device-readable buffers
// followed by the device-writable buffers, with indirect tables resolved.
// Devices treat the readable and the writable buffers each as one byte
// stream, because virtio 1.x drivers may split a request across
// descriptors in any way.
type Chain struct {
	// Head is the index of the chain's first descriptor; the device
	// returns it in the used ring.
	Head     uint16
	Readable []Buffer
	Writable []Buffer

	mem *Memory
}

// ReadableLen returns the total length of the device-readable buffers.
func (c *Chain) ReadableLen() uint64 { return totalLen(c.Readable) }

// WritableLen returns the total length of the device-writable buffers.
func (c *Chain) WritableLen() uint64 { return totalLen(c.Writable) }

func totalLen(bufs []Buffer) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(b.Len)
	}
	return n
}

// ReadableSlices returns the guest memory of the readable stream at
// [off, off+n) as slices of RAM. They alias guest memory: do not write
// through them.
func (c *Chain) ReadableSlices(off, n uint64) ([][]byte, error) {
	return c.slices(c.Readable, off, n, false)
}

// WritableSlices returns the guest memory of the writable stream at
// [off, off+n) as slices of RAM and marks those pages dirty.
func (c *Chain) WritableSlices(off, n uint64) ([][]byte, error) {
	return c.slices(c.Writable, off, n, true)
}

func (c *Chain) slices(bufs []Buffer, off, n uint64, writable bool) ([][]byte, error) {
	var out [][]byte
	for _, b := range bufs {
		if n == 0 {
			break
		}
		blen := uint64(b.Len)
		if off >= blen {
			off -= blen
			continue
		}
		take := min(blen-off, n)
		var s []byte
		var err error
		if writable {
			s, err = c.mem.WritableSlice(b.Addr+off, take)
		} else {
			s, err = c.mem.Slice(b.Addr+off, take)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		off = 0
		n -= take
	}
	if n != 0 {
		return nil, fmt.Errorf("virtio: chain with head %d has %d bytes fewer than requested", c.Head, n)
	}
	return out, nil
}

// ReadAt copies len(p) bytes of the readable stream at off into p.
func (c *Chain) ReadAt(p []byte, off uint64) error {
	parts, err := c.ReadableSlices(off, uint64(len(p)))
	if err != nil {
		return err
	}
	for _, s := range parts {
		p = p[copy(p, s):]
	}
	return nil
}

// WriteAt copies p into the writable stream at off.
func (c *Chain) WriteAt(p []byte, off uint64) error {
	parts, err := c.WritableSlices(off, uint64(len(p)))
	if err != nil {
		return err
	}
	for _, s := range parts {
		p = p[copy(s, p):]
	}
	return nil
}

// chainWalker resolves descriptor chains of one queue. It keeps two
// visit-mark arrays, one for the descriptor table and one for an indirect
// table, stamped with an epoch per walk so that they need no clearing.
type chainWalker struct {
	mem      *Memory
	queue    int
	table    uint64 // guest-physical address of the descriptor table
	size     uint16 // queue size: table entries and maximum chain length
	indirect bool   // VIRTIO_F_INDIRECT_DESC was negotiated

	epoch        uint32
	seenDirect   []uint32
	seenIndirect []uint32
}

func newChainWalker(mem *Memory, queue int, table uint64, size uint16, indirect bool) *chainWalker {
	return &chainWalker{
		mem: mem, queue: queue, table: table, size: size, indirect: indirect,
		seenDirect:   make([]uint32, size),
		seenIndirect: make([]uint32, size),
	}
}

type rawDescriptor struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func (w *chainWalker) readDescriptor(table uint64, index uint16) (rawDescriptor, error) {
	var b [descSize]byte
	if err := w.mem.Read(table+uint64(index)*descSize, b[:]); err != nil {
		return rawDescriptor{}, err
	}
	return rawDescriptor{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}, nil
}

// walk resolves the chain that starts at head and checks every rule of the
// split virtqueue format that protects the device. These are index bounds,
// loops, readable before writable, and buffers inside RAM. The chain may
// have at most queue size buffers, counting those of an indirect table. An
// indirect descriptor needs the negotiated feature, no NEXT flag, no
// nesting, and a length that is a non-zero multiple of 16.
func (w *chainWalker) walk(head uint16) (*Chain, error) {
	fail := func(index uint16, indirect bool, err error, format string, args ...any) error {
		return &ChainError{Queue: w.queue, Head: head, Index: index, Indirect: indirect, Detail: fmt.Sprintf(format, args...), Err: err}
	}
	if head >= w.size {
		return nil, fail(head, false, ErrDescriptorIndex, "head %d, queue size %d", head, w.size)
	}

	w.epoch++
	if w.epoch == 0 {
		clear(w.seenDirect)
		clear(w.seenIndirect)
		w.epoch = 1
	}

	chain := &Chain{Head: head, mem: w.mem}
	table, tableLen, inIndirect := w.table, uint32(w.size), false
	index, count := head, 0
	for {
		seen := w.seenDirect
		if inIndirect {
			seen = w.seenIndirect
		}
		if seen[index] == w.epoch {
			return nil, fail(index, inIndirect, ErrDescriptorLoop, "")
		}
		seen[index] = w.epoch

		d, err := w.readDescriptor(table, index)
		if err != nil {
			return nil, fail(index, inIndirect, ErrBufferOutsideRAM, "reading the descriptor: %v", err)
		}

		if d.flags&descFlagIndirect != 0 {
			if err := w.checkIndirect(d, inIndirect); err != nil {
				return nil, fail(index, inIndirect, ErrIndirectDescriptor, "%v", err)
			}
			table, tableLen, inIndirect, index = d.addr, d.len/descSize, true, 0
			continue
		}

		count++
		if count > int(w.size) {
			return nil, fail(index, inIndirect, ErrChainTooLong, "more than %d buffers", w.size)
		}
		if err := w.mem.Check(d.addr, uint64(d.len)); err != nil {
			return nil, fail(index, inIndirect, ErrBufferOutsideRAM, "%v", err)
		}
		buf := Buffer{Addr: d.addr, Len: d.len}
		if d.flags&descFlagWrite != 0 {
			chain.Writable = append(chain.Writable, buf)
		} else {
			if len(chain.Writable) > 0 {
				return nil, fail(index, inIndirect, ErrDescriptorOrder, "")
			}
			chain.Readable = append(chain.Readable, buf)
		}

		if d.flags&descFlagNext == 0 {
			return chain, nil
		}
		if uint32(d.next) >= tableLen {
			return nil, fail(index, inIndirect, ErrDescriptorIndex, "next %d, table has %d entries", d.next, tableLen)
		}
		index = d.next
	}
}

func (w *chainWalker) checkIndirect(d rawDescriptor, inIndirect bool) error {
	switch {
	case !w.indirect:
		return errors.New("VIRTIO_F_INDIRECT_DESC was not negotiated")
	case inIndirect:
		return errors.New("an indirect table must not refer to another indirect table")
	case d.flags&descFlagNext != 0:
		return errors.New("flags INDIRECT and NEXT are both set")
	case d.len == 0 || d.len%descSize != 0:
		return fmt.Errorf("table length %d is not a non-zero multiple of %d", d.len, descSize)
	case d.len/descSize > uint32(w.size):
		return fmt.Errorf("table has %d entries, more than the queue size %d", d.len/descSize, w.size)
	}
	if err := w.mem.Check(d.addr, uint64(d.len)); err != nil {
		return fmt.Errorf("table: %w", err)
	}
	return nil
}
