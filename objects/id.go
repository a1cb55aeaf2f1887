// Package objects is spore's content-addressed object store.
//
// Every object has a kind (chunk, tree or commit) and an ID: the blake3-256
// hash of its canonical encoding, which is a header (kind byte and payload
// length as a uvarint) followed by the payload. Compression is a storage
// detail and never changes an ID, and every read verifies the hash.
//
// The store lives in a directory that holds a badger database. Many
// processes share one store: the first one to open it either starts a store
// server (a separate process that owns the database and serves clients over
// a unix socket in the directory) or serves the database in-process, and
// every later opener becomes a client. See Open.
package objects

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// IDSize is the length of an object ID in bytes (blake3-256).
const IDSize = 32

// ID is the blake3-256 hash of an object's canonical encoding.
type ID [IDSize]byte

// ZeroID is the ID that no object has; it stands for "no object" in
// refs and reflogs.
var ZeroID ID

// String returns the ID as 64 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 12 hex digits of the ID, for display.
func (id ID) Short() string { return id.String()[:12] }

// IsZero reports whether id is ZeroID.
func (id ID) IsZero() bool { return id == ZeroID }

// MarshalText encodes the ID as hex, so IDs print as strings in JSON.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses 64 hex digits.
func (id *ID) UnmarshalText(b []byte) error {
	parsed, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}

// ErrInvalidID is returned for strings that are not 64 hex digits.
var ErrInvalidID = errors.New("invalid object ID")

// ParseID parses a full object ID of 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("%w %q: want %d hex digits, got %d", ErrInvalidID, s, 2*IDSize, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(strings.ToLower(s))); err != nil {
		return id, fmt.Errorf("%w %q: %v", ErrInvalidID, s, err)
	}
	return id, nil
}

// IsHexPrefix reports whether s could be an abbreviated object ID: between
// MinPrefixLen and 64 hex digits.
func IsHexPrefix(s string) bool {
	if len(s) < MinPrefixLen || len(s) > 2*IDSize {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// MinPrefixLen is the shortest abbreviated ID that lookups accept.
const MinPrefixLen = 4
