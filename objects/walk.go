package objects

import "fmt"

// Link is a reference from one object to another.
type Link struct {
	ID   ID
	Kind Kind
}

// Links returns the objects that an object refers to: a commit's tree and
// parents, a named tree's entries, an index node's present children.
// Chunks refer to nothing.
func Links(kind Kind, payload []byte) ([]Link, error) {
	switch kind {
	case KindChunk:
		return nil, nil
	case KindCommit:
		c, err := DecodeCommit(payload)
		if err != nil {
			return nil, err
		}
		links := []Link{{ID: c.Tree, Kind: KindTree}}
		for _, p := range c.Parents {
			links = append(links, Link{ID: p, Kind: KindCommit})
		}
		return links, nil
	case KindTree:
		form, err := TreeForm(payload)
		if err != nil {
			return nil, err
		}
		if form == treeFormNamed {
			t, err := DecodeTree(payload)
			if err != nil {
				return nil, err
			}
			links := make([]Link, len(t.Entries))
			for i, e := range t.Entries {
				links[i] = Link{ID: e.ID, Kind: e.Kind}
			}
			return links, nil
		}
		n, err := DecodeIndexNode(payload)
		if err != nil {
			return nil, err
		}
		childKind := KindTree
		if n.Level == 0 {
			childKind = KindChunk
		}
		links := make([]Link, 0, len(n.Children))
		for _, c := range n.Children {
			if !c.IsZero() {
				links = append(links, Link{ID: c, Kind: childKind})
			}
		}
		return links, nil
	}
	return nil, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, byte(kind))
}

// Closure calls fn once for every object that roots reach, roots included,
// parents before children. It reads trees and commits to find their links
// but not chunks, so it is cheap for large indexes. Transport uses it to
// enumerate what a commit needs.
func (s *Store) Closure(roots []ID, fn func(Link) error) error {
	seen := make(map[ID]bool)
	stack := make([]Link, 0, len(roots))
	for i := len(roots) - 1; i >= 0; i-- {
		stack = append(stack, Link{ID: roots[i]})
	}
	for len(stack) > 0 {
		l := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[l.ID] {
			continue
		}
		seen[l.ID] = true
		if l.Kind == KindChunk {
			if err := fn(l); err != nil {
				return err
			}
			continue
		}
		kind, payload, err := s.Get(l.ID)
		if err != nil {
			return err
		}
		l.Kind = kind
		if err := fn(l); err != nil {
			return err
		}
		links, err := Links(kind, payload)
		if err != nil {
			return fmt.Errorf("object %s: %w", l.ID, err)
		}
		for i := len(links) - 1; i >= 0; i-- {
			stack = append(stack, links[i])
		}
	}
	return nil
}
