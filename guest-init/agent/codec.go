package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Field limits. A decoder rejects a body that exceeds any of them, and an
// encoder's caller is expected to check them first (Client does).
const (
	MaxArgs        = 1024     // entries in an argv or env list
	MaxArgLen      = 32 << 10 // bytes in one argv or env entry
	MaxListBytes   = 96 << 10 // bytes in all entries of one list
	MaxPathLen     = 4096     // bytes in a working directory or hook path
	MaxDataLen     = 32 << 10 // bytes in one Data message
	MaxTextLen     = 4096     // bytes in an error message or info string
	MaxHostnameLen = 64       // bytes in a hostname (the Linux limit)
	MaxEntropyLen  = 512      // bytes of RNG seed in a SetIdentity message
	MaxSessions    = 256      // sessions a Server keeps at once
)

// ErrMalformed is wrapped by every error about a frame body that does not
// decode as its message type.
var ErrMalformed = errors.New("malformed agent message")

// encoder appends big-endian fields to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) i64(v int64)  { e.u64(uint64(v)) }

func (e *encoder) bool(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

func (e *encoder) bytes(v []byte) {
	e.u32(uint32(len(v)))
	e.b = append(e.b, v...)
}

func (e *encoder) str(v string) {
	e.u32(uint32(len(v)))
	e.b = append(e.b, v...)
}

func (e *encoder) strs(v []string) {
	e.u32(uint32(len(v)))
	for _, s := range v {
		e.str(s)
	}
}

// decoder reads big-endian fields from a body. The first error sticks:
// later reads return zero values, and err reports the first failure.
type decoder struct {
	b   []byte
	off int
	err error
	msg MsgType
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d: %s", ErrMalformed, d.msg, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("%s needs %d bytes, %d left", field, n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) u8(field string) uint8 {
	if v := d.take(1, field); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if v := d.take(2, field); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if v := d.take(4, field); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if v := d.take(8, field); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) i64(field string) int64 { return int64(d.u64(field)) }

func (d *decoder) bool(field string) bool {
	v := d.u8(field)
	if v > 1 {
		d.fail("%s is %d, expected 0 or 1", field, v)
	}
	return v == 1
}

// bytes returns a copy of a length-prefixed byte field of at most max bytes.
func (d *decoder) bytes(field string, max int) []byte {
	n := d.u32(field + " length")
	if d.err != nil {
		return nil
	}
	if n > uint32(max) {
		d.fail("%s is %d bytes, the limit is %d", field, n, max)
		return nil
	}
	v := d.take(int(n), field)
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *decoder) str(field string, max int) string {
	return string(d.bytes(field, max))
}

// strs decodes a list of at most MaxArgs strings, each at most MaxArgLen
// bytes and all together at most MaxListBytes.
func (d *decoder) strs(field string) []string {
	n := d.u32(field + " count")
	if d.err != nil {
		return nil
	}
	if n > MaxArgs {
		d.fail("%s has %d entries, the limit is %d", field, n, MaxArgs)
		return nil
	}
	var out []string
	total := 0
	for i := 0; i < int(n); i++ {
		s := d.str(fmt.Sprintf("%s[%d]", field, i), MaxArgLen)
		total += len(s)
		if total > MaxListBytes {
			d.fail("%s totals more than %d bytes", field, MaxListBytes)
		}
		if d.err != nil {
			return nil
		}
		out = append(out, s)
	}
	return out
}

// finish reports the sticky error or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}
