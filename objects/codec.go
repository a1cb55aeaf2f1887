package objects

import (
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Stored values in the database are a codec byte, a kind byte and the
// payload, compressed or not. The codec never enters the ID.
const (
	codecRaw byte = 0
	codecS2  byte = 1
)

// minCompressSize is the payload size below which compression is skipped:
// small trees and commits gain nothing from it.
const minCompressSize = 256

// encodeStored builds the database value for an object. Payloads that s2
// does not shrink by at least 1/32 are stored raw, so random memory costs
// no decompression on reads.
func encodeStored(kind Kind, payload []byte) []byte {
	if len(payload) >= minCompressSize {
		buf := make([]byte, 2+s2.MaxEncodedLen(len(payload)))
		buf[0], buf[1] = codecS2, byte(kind)
		enc := s2.Encode(buf[2:], payload)
		if len(enc) < len(payload)-len(payload)/32 {
			return buf[:2+len(enc)]
		}
	}
	out := make([]byte, 2+len(payload))
	out[0], out[1] = codecRaw, byte(kind)
	copy(out[2:], payload)
	return out
}

// decodeStored reverses encodeStored and verifies the result against id.
func decodeStored(id ID, value []byte) (Kind, []byte, error) {
	if len(value) < 2 {
		return 0, nil, fmt.Errorf("object %s: %w: stored value of %d bytes has no codec header", id, ErrCorrupt, len(value))
	}
	kind := Kind(value[1])
	if !kind.Valid() {
		return 0, nil, fmt.Errorf("object %s: %w: unknown kind byte %d", id, ErrCorrupt, value[1])
	}
	var payload []byte
	switch value[0] {
	case codecRaw:
		payload = value[2:]
	case codecS2:
		n, err := s2.DecodedLen(value[2:])
		if err != nil || n > MaxObjectSize {
			return 0, nil, fmt.Errorf("object %s: %w: invalid s2 block header", id, ErrCorrupt)
		}
		payload, err = s2.Decode(make([]byte, n), value[2:])
		if err != nil {
			return 0, nil, fmt.Errorf("object %s: %w: s2: %v", id, ErrCorrupt, err)
		}
	default:
		return 0, nil, fmt.Errorf("object %s: %w: unknown codec byte %d", id, ErrCorrupt, value[0])
	}
	if got := Hash(kind, payload); got != id {
		return 0, nil, fmt.Errorf("object %s: %w: stored %s hashes to %s", id, ErrCorrupt, kind, got)
	}
	return kind, payload, nil
}
