package objects

import (
	"fmt"
	"sort"
	"sync"
)

// UpdateIndex returns a new index that equals the index parent except for
// the chunks in changes, keyed by image offset. Each offset must be the
// start of a chunk and each value exactly as long as that chunk. It writes
// only the changed chunks and the index nodes on their paths to the root;
// unchanged chunks are neither read nor hashed. This is how capture stores
// the dirty chunks of guest memory.
func (s *Store) UpdateIndex(parent ID, changes map[uint64][]byte) (ID, WriteStats, error) {
	var stats WriteStats
	root, err := s.GetIndexNode(parent)
	if err != nil {
		return ZeroID, stats, fmt.Errorf("update index: %w", err)
	}
	chunkSize := uint64(root.ChunkSize)
	offsets := make([]uint64, 0, len(changes))
	for off, data := range changes {
		if off%chunkSize != 0 || off >= root.Size {
			return ZeroID, stats, fmt.Errorf("update index %s: offset %#x is not the start of a chunk of %d bytes inside %d bytes", parent, off, chunkSize, root.Size)
		}
		if want := min(chunkSize, root.Size-off); uint64(len(data)) != want {
			return ZeroID, stats, fmt.Errorf("update index %s: chunk at offset %#x has %d bytes, want %d", parent, off, len(data), want)
		}
		offsets = append(offsets, off)
	}
	if len(offsets) == 0 {
		return parent, stats, nil
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })

	ids, err := s.putChangedChunks(offsets, changes, &stats)
	if err != nil {
		return ZeroID, stats, fmt.Errorf("update index %s: %w", parent, err)
	}
	newIDs := make(map[uint64]ID, len(offsets))
	for i, off := range offsets {
		newIDs[off] = ids[i]
	}

	id, err := s.rewriteNode(root, 0, offsets, newIDs, true, &stats)
	if err != nil {
		return ZeroID, stats, fmt.Errorf("update index %s: %w", parent, err)
	}
	return id, stats, nil
}

// putChangedChunks stores the changed chunks in parallel groups and returns
// their IDs in the order of offsets.
func (s *Store) putChangedChunks(offsets []uint64, changes map[uint64][]byte, stats *WriteStats) ([]ID, error) {
	ids := make([]ID, len(offsets))
	var fail firstError
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for first := 0; first < len(offsets); first += chunksPerRead {
		last := min(first+chunksPerRead, len(offsets))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			chunks := make([][]byte, 0, last-first)
			for _, off := range offsets[first:last] {
				chunks = append(chunks, changes[off])
			}
			var local WriteStats
			got, err := s.putChunks(chunks, &local)
			stats.add(&local)
			if err != nil {
				fail.set(err)
				return
			}
			copy(ids[first:], got)
		}()
	}
	wg.Wait()
	return ids, fail.err
}

// rewriteNode returns the ID of a copy of n (which starts at image offset
// base) with the chunks at offsets replaced. A non-root node whose children
// are all holes becomes ZeroID.
func (s *Store) rewriteNode(n *IndexNode, base uint64, offsets []uint64, newIDs map[uint64]ID, isRoot bool, stats *WriteStats) (ID, error) {
	out := *n
	out.Children = append([]ID(nil), n.Children...)
	span := n.ChildSpan()
	for len(offsets) > 0 {
		slot := (offsets[0] - base) / span
		slotEnd := base + (slot+1)*span
		j := sort.Search(len(offsets), func(i int) bool { return offsets[i] >= slotEnd })
		group := offsets[:j]
		offsets = offsets[j:]

		if n.Level == 0 {
			out.Children[slot] = newIDs[group[0]]
			continue
		}
		childBase := base + slot*span
		child, err := s.childNode(n, slot, childBase)
		if err != nil {
			return ZeroID, err
		}
		id, err := s.rewriteNode(child, childBase, group, newIDs, false, stats)
		if err != nil {
			return ZeroID, err
		}
		out.Children[slot] = id
	}
	if !isRoot && allZero(out.Children) {
		return ZeroID, nil
	}
	got, err := s.putNodes([]*IndexNode{&out}, stats)
	if err != nil {
		return ZeroID, err
	}
	return got[0], nil
}

// childNode loads child slot of n, or makes an all-hole node for a hole.
func (s *Store) childNode(n *IndexNode, slot, childBase uint64) (*IndexNode, error) {
	span := n.ChildSpan()
	size := min(span, n.Size-slot*span)
	id := n.Children[slot]
	if id.IsZero() {
		childSpan, _ := childSpan(n.Level-1, n.ChunkSize, n.Fanout)
		return &IndexNode{
			Level: n.Level - 1, ChunkSize: n.ChunkSize, Fanout: n.Fanout, Size: size,
			Children: make([]ID, (size+childSpan-1)/childSpan),
		}, nil
	}
	child, err := s.GetIndexNode(id)
	if err != nil {
		return nil, err
	}
	if child.Level != n.Level-1 || child.Size != size || child.ChunkSize != n.ChunkSize || child.Fanout != n.Fanout {
		return nil, fmt.Errorf("%w: index node %s at offset %#x does not fit its parent", ErrCorrupt, id, childBase)
	}
	return child, nil
}
