package vm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Binary encodings of the vCPU and vGIC states that a commit stores. Each
// starts with a format byte and a version byte, and uses uvarints for
// counts and little-endian fixed-size fields, so equal states always encode
// to equal bytes.
const (
	formatVCPU = 'C'
	formatGIC  = 'G'
	// stateVersion is the version of both encodings.
	stateVersion = 1
	// Limits that keep a decoder of untrusted bytes from allocating much:
	// KVM lists a few hundred registers per vCPU, and the vGIC has at most
	// 48K register offsets per frame.
	maxRegisters    = 4096
	maxRegisterSize = 256
	maxGICRegisters = 1 << 16
	maxGICCPUs      = 512
)

// ErrStateEncoding is wrapped by decoding errors of saved states.
var ErrStateEncoding = errors.New("invalid saved state")

// MarshalBinary encodes the vCPU state.
func (s VCPUState) MarshalBinary() ([]byte, error) {
	b := []byte{formatVCPU, stateVersion}
	b = binary.AppendUvarint(b, uint64(s.Index))
	b = binary.AppendUvarint(b, uint64(s.MPState))
	b = binary.AppendUvarint(b, uint64(len(s.Registers)))
	for _, r := range s.Registers {
		b = binary.LittleEndian.AppendUint64(b, r.ID)
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Value...)
	}
	return b, nil
}

// UnmarshalBinary decodes a vCPU state and rejects malformed input.
func (s *VCPUState) UnmarshalBinary(data []byte) error {
	d := decoder{data: data}
	d.header(formatVCPU)
	s.Index = int(d.uvarint(maxGICCPUs))
	s.MPState = uint32(d.uvarint(1 << 31))
	n := d.uvarint(maxRegisters)
	s.Registers = nil
	for i := uint64(0); i < n && d.err == nil; i++ {
		id := d.u64()
		size := d.uvarint(maxRegisterSize)
		value := d.bytes(size)
		if d.err == nil && int(size) != 1<<((id>>52)&0xf) {
			d.fail("register %#x has %d bytes, its ID says %d", id, size, 1<<((id>>52)&0xf))
		}
		s.Registers = append(s.Registers, Register{ID: id, Value: value})
	}
	return d.finish()
}

// MarshalBinary encodes the vGIC state.
func (s GICState) MarshalBinary() ([]byte, error) {
	b := []byte{formatGIC, stateVersion}
	b = appendGICRegisters(b, s.Dist)
	b = binary.AppendUvarint(b, uint64(len(s.Redist)))
	for i := range s.Redist {
		b = appendGICRegisters(b, s.Redist[i])
		b = appendGICRegisters(b, s.CPUInterface[i])
	}
	b = appendGICRegisters(b, s.LineLevels)
	return b, nil
}

func appendGICRegisters(b []byte, regs []GICRegister) []byte {
	b = binary.AppendUvarint(b, uint64(len(regs)))
	for _, r := range regs {
		b = binary.AppendUvarint(b, r.Key)
		b = binary.LittleEndian.AppendUint64(b, r.Value)
	}
	return b
}

// UnmarshalBinary decodes a vGIC state and rejects malformed input.
func (s *GICState) UnmarshalBinary(data []byte) error {
	d := decoder{data: data}
	d.header(formatGIC)
	s.Dist = d.gicRegisters()
	cpus := d.uvarint(maxGICCPUs)
	s.Redist, s.CPUInterface = nil, nil
	for i := uint64(0); i < cpus && d.err == nil; i++ {
		s.Redist = append(s.Redist, d.gicRegisters())
		s.CPUInterface = append(s.CPUInterface, d.gicRegisters())
	}
	s.LineLevels = d.gicRegisters()
	return d.finish()
}

// decoder reads the state encodings, keeping the first error.
type decoder struct {
	data []byte
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrStateEncoding, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) header(format byte) {
	if len(d.data) < 2 {
		d.fail("%d bytes, too short for a header", len(d.data))
		return
	}
	if d.data[0] != format || d.data[1] != stateVersion {
		d.fail("format %q version %d, expected %q version %d", d.data[0], d.data[1], format, stateVersion)
		return
	}
	d.data = d.data[2:]
}

func (d *decoder) uvarint(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data)
	if n <= 0 {
		d.fail("truncated or overlong number")
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		// Overlong forms would give one state two encodings.
		d.fail("non-canonical number encoding")
		return 0
	}
	if v > limit {
		d.fail("value %d exceeds the limit %d", v, limit)
		return 0
	}
	d.data = d.data[n:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.data) < 8 {
		d.fail("truncated 64-bit field")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.data)
	d.data = d.data[8:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.data)) < n {
		d.fail("truncated: %d bytes left, %d needed", len(d.data), n)
		return nil
	}
	b := append([]byte(nil), d.data[:n]...)
	d.data = d.data[n:]
	return b
}

func (d *decoder) gicRegisters() []GICRegister {
	n := d.uvarint(maxGICRegisters)
	var regs []GICRegister
	for i := uint64(0); i < n && d.err == nil; i++ {
		key := d.uvarint(1<<63 - 1)
		value := d.u64()
		regs = append(regs, GICRegister{Key: key, Value: value})
	}
	return regs
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.data) != 0 {
		d.fail("%d trailing bytes", len(d.data))
	}
	return d.err
}
