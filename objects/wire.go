package objects

import (
	"encoding/binary"
	"fmt"
)

// encoder appends the primitive fields of object encodings.
type encoder struct{ buf []byte }

func (e *encoder) byte1(b byte) { e.buf = append(e.buf, b) }
func (e *encoder) uvarint(v uint64) {
	e.buf = binary.AppendUvarint(e.buf, v)
}
func (e *encoder) varint(v int64) { e.buf = binary.AppendVarint(e.buf, v) }
func (e *encoder) bytes(b []byte) {
	e.uvarint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}
func (e *encoder) str(s string) { e.bytes([]byte(s)) }
func (e *encoder) id(id ID)     { e.buf = append(e.buf, id[:]...) }

// decoder reads the fields written by encoder. The first error sticks and
// every later read returns zero values, so callers check err once.
type decoder struct {
	buf []byte
	err error
	// sentinel is wrapped by decoding errors; nil means ErrCorrupt.
	sentinel error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		sentinel := d.sentinel
		if sentinel == nil {
			sentinel = ErrCorrupt
		}
		d.err = fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
	}
}

func (d *decoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 1 {
		d.fail("truncated")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("invalid uvarint")
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		d.fail("uvarint is not minimally encoded")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("invalid varint")
		return 0
	}
	if n != len(binary.AppendVarint(nil, v)) {
		d.fail("varint is not minimally encoded")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// count reads a uvarint element count and rejects counts that cannot fit
// in the remaining bytes, given each element's minimum size.
func (d *decoder) count(minElem int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if minElem < 1 {
		minElem = 1
	}
	if n > uint64(len(d.buf)/minElem) {
		d.fail("count %d exceeds the remaining %d bytes", n, len(d.buf))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("length %d exceeds the remaining %d bytes", n, len(d.buf))
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) id() ID {
	var id ID
	if d.err != nil {
		return id
	}
	if len(d.buf) < IDSize {
		d.fail("truncated object ID")
		return id
	}
	copy(id[:], d.buf)
	d.buf = d.buf[IDSize:]
	return id
}

// end fails unless every byte was consumed, so that one object has exactly
// one encoding.
func (d *decoder) end() {
	if d.err == nil && len(d.buf) != 0 {
		d.fail("%d trailing bytes", len(d.buf))
	}
}
