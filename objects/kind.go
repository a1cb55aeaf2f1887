package objects

import "fmt"

// Kind is the type of an object. Its byte value is part of the canonical
// encoding and therefore of every ID: never renumber a kind.
type Kind byte

const (
	// KindChunk is raw bytes of memory or disk, or a small state blob.
	KindChunk Kind = 1
	// KindTree is either a named tree (name -> kind and ID) or a node of a
	// chunk index (offset -> chunk); the first payload bytes tell them apart.
	KindTree Kind = 2
	// KindCommit is a commit: tree, parents, platform contract, generation,
	// time, author and message.
	KindCommit Kind = 3
)

// String returns the kind's name as spore show prints it.
func (k Kind) String() string {
	switch k {
	case KindChunk:
		return "chunk"
	case KindTree:
		return "tree"
	case KindCommit:
		return "commit"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindChunk || k == KindTree || k == KindCommit }

// ParseKind converts a kind name back to a Kind.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "chunk":
		return KindChunk, nil
	case "tree":
		return KindTree, nil
	case "commit":
		return KindCommit, nil
	}
	return 0, fmt.Errorf("unknown object kind %q: want chunk, tree or commit", s)
}
