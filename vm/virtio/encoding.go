package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// stateEncoder builds the binary state encodings of this package: a 4-byte
// magic, a 16-bit format version, then fixed-width little-endian fields and
// length-prefixed byte strings, in declaration order. The same state always
// encodes to the same bytes.
type stateEncoder struct{ buf []byte }

func newStateEncoder(magic string, version uint16) *stateEncoder {
	e := &stateEncoder{buf: append([]byte(nil), magic...)}
	e.u16(version)
	return e
}

func (e *stateEncoder) u8(v uint8)   { e.buf = append(e.buf, v) }
func (e *stateEncoder) u16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }
func (e *stateEncoder) u32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }
func (e *stateEncoder) u64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

func (e *stateEncoder) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

func (e *stateEncoder) bytes(p []byte) {
	e.u32(uint32(len(p)))
	e.buf = append(e.buf, p...)
}

// errStateTruncated is wrapped by decode errors of states that end early.
var errStateTruncated = errors.New("state is truncated")

// stateDecoder reads what stateEncoder wrote. The first error sticks, and
// later reads return zero values, so callers check err once at the end.
type stateDecoder struct {
	name string // the state's name, for messages
	data []byte
	off  int
	err  error
}

// newStateDecoder checks the magic and returns a decoder positioned after
// the version, together with the version.
func newStateDecoder(name, magic string, data []byte) (*stateDecoder, uint16) {
	d := &stateDecoder{name: name, data: data}
	if len(data) < len(magic)+2 || string(data[:len(magic)]) != magic {
		d.err = fmt.Errorf("virtio: %s: missing magic %q; this is not a saved %s", name, magic, name)
		return d, 0
	}
	d.off = len(magic)
	return d, d.u16()
}

func (d *stateDecoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.data)-d.off {
		d.err = fmt.Errorf("virtio: %s: %w: %d bytes needed at offset %d, %d left", d.name, errStateTruncated, n, d.off, len(d.data)-d.off)
		return nil
	}
	p := d.data[d.off : d.off+n]
	d.off += n
	return p
}

func (d *stateDecoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *stateDecoder) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (d *stateDecoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *stateDecoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *stateDecoder) boolean() bool {
	v := d.u8()
	if v > 1 && d.err == nil {
		d.err = fmt.Errorf("virtio: %s: boolean at offset %d has value %d, expected 0 or 1", d.name, d.off-1, v)
	}
	return v == 1
}

// bytes reads a length-prefixed byte string of at most max bytes and
// returns a copy.
func (d *stateDecoder) bytes(max int) []byte {
	n := d.u32()
	if d.err == nil && uint64(n) > uint64(max) {
		d.err = fmt.Errorf("virtio: %s: byte string at offset %d has length %d, more than the limit %d", d.name, d.off-4, n, max)
	}
	p := d.take(int(n))
	if p == nil {
		return nil
	}
	return append([]byte{}, p...)
}

// count reads a 32-bit element count and checks it against max.
func (d *stateDecoder) count(max int) int {
	n := d.u32()
	if d.err == nil && uint64(n) > uint64(max) {
		d.err = fmt.Errorf("virtio: %s: count %d at offset %d is more than the limit %d", d.name, n, d.off-4, max)
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// finish returns the first error, or an error if bytes are left over.
func (d *stateDecoder) finish() error {
	if d.err == nil && d.off != len(d.data) {
		d.err = fmt.Errorf("virtio: %s: %d unexpected bytes after the state", d.name, len(d.data)-d.off)
	}
	return d.err
}
