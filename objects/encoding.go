package objects

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
)

// MaxObjectSize bounds the payload of one object. Chunks are far smaller;
// the bound keeps a corrupt length field from allocating gigabytes.
const MaxObjectSize = 64 << 20

// ErrCorrupt is wrapped by every error about bytes that do not decode or do
// not match their ID.
var ErrCorrupt = errors.New("corrupt object")

// header returns the canonical header of an object: the kind byte followed
// by the payload length as a uvarint.
func header(kind Kind, n int) []byte {
	var buf [1 + binary.MaxVarintLen64]byte
	buf[0] = byte(kind)
	m := binary.PutUvarint(buf[1:], uint64(n))
	return buf[:1+m]
}

// Hash returns the ID of an object with the given kind and payload.
func Hash(kind Kind, payload []byte) ID {
	h := blake3.New()
	h.Write(header(kind, len(payload)))
	h.Write(payload)
	var id ID
	h.Sum(id[:0])
	return id
}

// Encode returns the canonical encoding of an object: header and payload.
// Transport moves objects in this form; its blake3-256 hash is the ID.
func Encode(kind Kind, payload []byte) []byte {
	h := header(kind, len(payload))
	out := make([]byte, 0, len(h)+len(payload))
	out = append(out, h...)
	return append(out, payload...)
}

// Decode splits a canonical encoding into kind and payload. It does not
// check an ID; use DecodeVerified for bytes that came from elsewhere.
func Decode(raw []byte) (Kind, []byte, error) {
	if len(raw) < 2 {
		return 0, nil, fmt.Errorf("%w: encoding of %d bytes is shorter than a header", ErrCorrupt, len(raw))
	}
	kind := Kind(raw[0])
	if !kind.Valid() {
		return 0, nil, fmt.Errorf("%w: unknown kind byte %d", ErrCorrupt, raw[0])
	}
	n, m := binary.Uvarint(raw[1:])
	if m <= 0 {
		return 0, nil, fmt.Errorf("%w: invalid length in header", ErrCorrupt)
	}
	if n > MaxObjectSize {
		return 0, nil, fmt.Errorf("%w: payload length %d exceeds the maximum of %d", ErrCorrupt, n, MaxObjectSize)
	}
	payload := raw[1+m:]
	if uint64(len(payload)) != n {
		return 0, nil, fmt.Errorf("%w: header says %d payload bytes, found %d", ErrCorrupt, n, len(payload))
	}
	if m != len(header(kind, int(n)))-1 {
		return 0, nil, fmt.Errorf("%w: length in header is not minimally encoded", ErrCorrupt)
	}
	return kind, payload, nil
}

// DecodeVerified decodes raw and checks that it hashes to want.
func DecodeVerified(want ID, raw []byte) (Kind, []byte, error) {
	kind, payload, err := Decode(raw)
	if err != nil {
		return 0, nil, fmt.Errorf("object %s: %w", want, err)
	}
	if got := Hash(kind, payload); got != want {
		return 0, nil, fmt.Errorf("object %s: %w: content hashes to %s", want, ErrCorrupt, got)
	}
	return kind, payload, nil
}
