package objects

import (
	"fmt"
	"sort"
	"strings"
)

// Tree payloads start with a form byte and a version byte.
const (
	treeFormNamed byte = 'n'
	treeFormIndex byte = 'i'
	treeVersion   byte = 1
)

// MaxEntryName bounds the length of a tree entry name in bytes.
const MaxEntryName = 255

// TreeEntry is one named entry of a tree.
type TreeEntry struct {
	// Name is a slash-separated path such as "memory", "vcpu/0" or
	// "devices/blk0". See ValidateEntryName.
	Name string `json:"name"`
	// Kind is the kind of the object that ID names.
	Kind Kind `json:"-"`
	// ID is the object the entry names.
	ID ID `json:"id"`
}

// Tree is a named tree: a set of entries sorted by name. A commit's tree
// holds config, vcpu/N, devices/NAME, memory, disks/NAME, agent and net.
type Tree struct {
	Entries []TreeEntry
}

// Entry returns the entry with the given name.
func (t *Tree) Entry(name string) (TreeEntry, bool) {
	i := sort.Search(len(t.Entries), func(i int) bool { return t.Entries[i].Name >= name })
	if i < len(t.Entries) && t.Entries[i].Name == name {
		return t.Entries[i], true
	}
	return TreeEntry{}, false
}

// ValidateEntryName checks a tree entry name: 1 to 255 bytes, components
// separated by single slashes, none of them empty, "." or "..", and no
// control characters.
func ValidateEntryName(name string) error {
	if name == "" {
		return fmt.Errorf("invalid tree entry name %q: empty", name)
	}
	if len(name) > MaxEntryName {
		return fmt.Errorf("invalid tree entry name %q: longer than %d bytes", name, MaxEntryName)
	}
	for _, c := range []byte(name) {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("invalid tree entry name %q: contains control character 0x%02x", name, c)
		}
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("invalid tree entry name %q: empty, \".\" or \"..\" path component", name)
		}
	}
	return nil
}

// NewTree builds a tree from entries in any order. It rejects invalid and
// duplicate names and unknown kinds.
func NewTree(entries []TreeEntry) (*Tree, error) {
	sorted := append([]TreeEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for i, e := range sorted {
		if err := ValidateEntryName(e.Name); err != nil {
			return nil, err
		}
		if !e.Kind.Valid() {
			return nil, fmt.Errorf("tree entry %q: unknown kind %d", e.Name, byte(e.Kind))
		}
		if i > 0 && sorted[i-1].Name == e.Name {
			return nil, fmt.Errorf("tree entry %q appears twice", e.Name)
		}
	}
	return &Tree{Entries: sorted}, nil
}

// Encode returns the tree's canonical payload.
func (t *Tree) Encode() []byte {
	e := encoder{}
	e.byte1(treeFormNamed)
	e.byte1(treeVersion)
	e.uvarint(uint64(len(t.Entries)))
	for _, ent := range t.Entries {
		e.str(ent.Name)
		e.byte1(byte(ent.Kind))
		e.id(ent.ID)
	}
	return e.buf
}

// DecodeTree parses a named tree payload and checks that it is canonical.
func DecodeTree(payload []byte) (*Tree, error) {
	d := decoder{buf: payload}
	if form := d.byte1(); d.err == nil && form != treeFormNamed {
		return nil, fmt.Errorf("%w: tree form %q is not a named tree", ErrCorrupt, form)
	}
	if v := d.byte1(); d.err == nil && v != treeVersion {
		return nil, fmt.Errorf("%w: named tree version %d is not supported (want %d)", ErrCorrupt, v, treeVersion)
	}
	n := d.count(2 + IDSize)
	t := &Tree{Entries: make([]TreeEntry, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		ent := TreeEntry{Name: d.str(), Kind: Kind(d.byte1()), ID: d.id()}
		t.Entries = append(t.Entries, ent)
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	for i, ent := range t.Entries {
		if err := ValidateEntryName(ent.Name); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if !ent.Kind.Valid() {
			return nil, fmt.Errorf("%w: tree entry %q has unknown kind %d", ErrCorrupt, ent.Name, byte(ent.Kind))
		}
		if i > 0 && t.Entries[i-1].Name >= ent.Name {
			return nil, fmt.Errorf("%w: tree entries are not sorted and unique at %q", ErrCorrupt, ent.Name)
		}
	}
	return t, nil
}

// TreeForm returns 'n' for a named tree and 'i' for a chunk index node.
func TreeForm(payload []byte) (byte, error) {
	if len(payload) == 0 {
		return 0, fmt.Errorf("%w: empty tree payload", ErrCorrupt)
	}
	switch payload[0] {
	case treeFormNamed, treeFormIndex:
		return payload[0], nil
	}
	return 0, fmt.Errorf("%w: unknown tree form byte 0x%02x", ErrCorrupt, payload[0])
}
