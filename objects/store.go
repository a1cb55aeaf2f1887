package objects

import (
	"errors"
	"fmt"
	"sort"
)

// Store reads and writes typed objects through a Backend. It encodes,
// compresses and hashes on the caller's side and verifies every object it
// reads. A Store is safe for concurrent use.
type Store struct {
	backend Backend
	nodes   *nodeCache
	// dir is the store directory, empty for a store without one.
	dir string
	// onClose runs before the backend closes; it stops an in-process server.
	onClose func()
}

// NewStore returns a Store over a backend.
func NewStore(b Backend) *Store {
	return &Store{backend: b, nodes: newNodeCache(defaultNodeCacheBytes)}
}

// Backend returns the backend that the store uses.
func (s *Store) Backend() Backend { return s.backend }

// Dir returns the store directory, or "" when the store has none.
func (s *Store) Dir() string { return s.dir }

// Close stops the in-process server, if the store runs one, and closes
// the backend.
func (s *Store) Close() error {
	if s.onClose != nil {
		s.onClose()
	}
	return s.backend.Close()
}

// Get returns an object's kind and payload after verifying its hash.
func (s *Store) Get(id ID) (Kind, []byte, error) {
	val, err := s.backend.Get(id)
	if err != nil {
		return 0, nil, err
	}
	return decodeStored(id, val)
}

// GetRaw returns an object's canonical encoding (header and payload),
// verified, as transport sends it.
func (s *Store) GetRaw(id ID) ([]byte, error) {
	kind, payload, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	return Encode(kind, payload), nil
}

// Has reports whether an object is stored.
func (s *Store) Has(id ID) (bool, error) {
	have, err := s.backend.Has([]ID{id})
	if err != nil {
		return false, err
	}
	return have[0], nil
}

// Put stores an object and returns its ID. Trees and commits must decode;
// PutTree and PutCommit also check that what they name is stored.
func (s *Store) Put(kind Kind, payload []byte) (ID, error) {
	if !kind.Valid() {
		return ZeroID, fmt.Errorf("put object: unknown kind %d", byte(kind))
	}
	if len(payload) > MaxObjectSize {
		return ZeroID, fmt.Errorf("put %s: payload of %d bytes exceeds the maximum of %d", kind, len(payload), MaxObjectSize)
	}
	if kind != KindChunk {
		if _, err := Links(kind, payload); err != nil {
			return ZeroID, fmt.Errorf("put %s: %w", kind, err)
		}
	}
	id := Hash(kind, payload)
	return id, s.backend.Put([]StoredObject{{ID: id, Value: encodeStored(kind, payload)}})
}

// PutRaw verifies that raw, a canonical encoding, hashes to want and
// stores it. Transport uses it to import objects from untrusted sources.
func (s *Store) PutRaw(want ID, raw []byte) error {
	kind, payload, err := DecodeVerified(want, raw)
	if err != nil {
		return err
	}
	if kind == KindTree || kind == KindCommit {
		if _, err := Links(kind, payload); err != nil {
			return fmt.Errorf("object %s: %w", want, err)
		}
	}
	return s.backend.Put([]StoredObject{{ID: want, Value: encodeStored(kind, payload)}})
}

// RawObject is an object in canonical encoding with the ID it claims.
type RawObject struct {
	ID  ID
	Raw []byte
}

// PutRawBatch verifies every object like PutRaw and stores them all in one
// request. It stores nothing when one of them fails verification.
func (s *Store) PutRawBatch(objs []RawObject) error {
	batch := make([]StoredObject, 0, len(objs))
	for _, o := range objs {
		kind, payload, err := DecodeVerified(o.ID, o.Raw)
		if err != nil {
			return err
		}
		if kind != KindChunk {
			if _, err := Links(kind, payload); err != nil {
				return fmt.Errorf("object %s: %w", o.ID, err)
			}
		}
		batch = append(batch, StoredObject{ID: o.ID, Value: encodeStored(kind, payload)})
	}
	return s.backend.Put(batch)
}

// GetCommit reads and decodes a commit.
func (s *Store) GetCommit(id ID) (*Commit, error) {
	kind, payload, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if kind != KindCommit {
		return nil, fmt.Errorf("object %s is a %s, not a commit", id, kind)
	}
	c, err := DecodeCommit(payload)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", id, err)
	}
	return c, nil
}

// PutCommit stores a commit. Its tree and parents must be stored already.
func (s *Store) PutCommit(c *Commit) (ID, error) {
	ids := append([]ID{c.Tree}, c.Parents...)
	have, err := s.backend.Has(ids)
	if err != nil {
		return ZeroID, err
	}
	for i, ok := range have {
		if !ok {
			return ZeroID, fmt.Errorf("put commit: %s %s: %w; store it first", map[bool]string{true: "tree", false: "parent"}[i == 0], ids[i], ErrNotFound)
		}
	}
	return s.Put(KindCommit, c.Encode())
}

// GetTree reads and decodes a named tree.
func (s *Store) GetTree(id ID) (*Tree, error) {
	kind, payload, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if kind != KindTree || len(payload) == 0 || payload[0] != treeFormNamed {
		return nil, fmt.Errorf("object %s is not a named tree", id)
	}
	t, err := DecodeTree(payload)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", id, err)
	}
	return t, nil
}

// PutTree stores a named tree. Its entries must be stored already.
func (s *Store) PutTree(t *Tree) (ID, error) {
	ids := make([]ID, len(t.Entries))
	for i, e := range t.Entries {
		ids[i] = e.ID
	}
	have, err := s.backend.Has(ids)
	if err != nil {
		return ZeroID, err
	}
	for i, ok := range have {
		if !ok {
			return ZeroID, fmt.Errorf("put tree: entry %q: object %s: %w; store it first", t.Entries[i].Name, ids[i], ErrNotFound)
		}
	}
	return s.Put(KindTree, t.Encode())
}

// ErrAmbiguous is wrapped by errors about an abbreviated ID that matches
// more than one object.
var ErrAmbiguous = errors.New("ambiguous")

// ResolvePrefix returns the one stored object whose ID starts with prefix.
// No match wraps ErrNotFound; several wrap ErrAmbiguous and list them.
func (s *Store) ResolvePrefix(prefix string) (ID, error) {
	if !IsHexPrefix(prefix) {
		return ZeroID, fmt.Errorf("%w: %q is not %d to %d hex digits", ErrInvalidID, prefix, MinPrefixLen, 2*IDSize)
	}
	ids, err := s.backend.ListIDs(prefix, ZeroID, 11)
	if err != nil {
		return ZeroID, err
	}
	switch len(ids) {
	case 0:
		return ZeroID, fmt.Errorf("no object ID starts with %s: %w", prefix, ErrNotFound)
	case 1:
		return ids[0], nil
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	list := ""
	for i, id := range ids {
		if i == 10 {
			list += "\n  ..."
			break
		}
		list += "\n  " + id.String()
	}
	return ZeroID, fmt.Errorf("object ID prefix %s is %w; use more digits. Candidates:%s", prefix, ErrAmbiguous, list)
}
