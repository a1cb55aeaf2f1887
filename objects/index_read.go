package objects

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
)

// GetIndexNode reads a chunk index node, from the node cache when it was
// read before.
func (s *Store) GetIndexNode(id ID) (*IndexNode, error) {
	if n := s.nodes.get(id); n != nil {
		return n, nil
	}
	kind, payload, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if kind != KindTree || len(payload) == 0 || payload[0] != treeFormIndex {
		return nil, fmt.Errorf("object %s is not a chunk index node", id)
	}
	n, err := DecodeIndexNode(payload)
	if err != nil {
		return nil, fmt.Errorf("index node %s: %w", id, err)
	}
	s.nodes.add(id, n)
	return n, nil
}

// Chunk is one chunk of an index, as ReadChunk returns it.
type Chunk struct {
	// Offset is the image offset of the chunk's first byte.
	Offset uint64
	// Len is the chunk's length; only the last chunk of an image may be
	// shorter than the chunk size.
	Len int
	// Hole is true when the chunk is all zeros and nothing is stored.
	// Data is nil then.
	Hole bool
	// ID is the chunk object, ZeroID for a hole.
	ID ID
	// Data is the verified, decompressed content.
	Data []byte
}

// ReadChunk returns the chunk that covers image offset off of the index
// whose root is root. This is the page-fault path: index nodes come from
// the node cache after the first lookup and the chunk is verified.
func (s *Store) ReadChunk(root ID, off uint64) (Chunk, error) {
	c, err := s.LocateChunk(root, off)
	if err != nil || c.Hole {
		return c, err
	}
	kind, data, err := s.Get(c.ID)
	if err != nil {
		return c, fmt.Errorf("index %s offset %#x: %w", root, off, err)
	}
	if kind != KindChunk || len(data) != c.Len {
		return c, fmt.Errorf("index %s offset %#x: %w: object %s is a %s of %d bytes, want a chunk of %d", root, off, ErrCorrupt, c.ID, kind, len(data), c.Len)
	}
	c.Data = data
	return c, nil
}

// LocateChunk returns the chunk that covers off without reading its data.
func (s *Store) LocateChunk(root ID, off uint64) (Chunk, error) {
	n, err := s.GetIndexNode(root)
	if err != nil {
		return Chunk{}, err
	}
	if off >= n.Size {
		return Chunk{}, fmt.Errorf("offset %#x is outside index %s of %d bytes", off, root, n.Size)
	}
	chunkSize := uint64(n.ChunkSize)
	start := off / chunkSize * chunkSize
	c := Chunk{Offset: start, Len: int(min(chunkSize, n.Size-start))}
	rel := off
	for {
		span := n.ChildSpan()
		child := n.Children[rel/span]
		if child.IsZero() {
			c.Hole = true
			return c, nil
		}
		if n.Level == 0 {
			c.ID = child
			return c, nil
		}
		rel %= span
		next, err := s.GetIndexNode(child)
		if err != nil {
			return c, fmt.Errorf("index %s offset %#x: %w", root, off, err)
		}
		if next.Level != n.Level-1 || next.ChunkSize != n.ChunkSize || next.Fanout != n.Fanout {
			return c, fmt.Errorf("index %s offset %#x: %w: node %s does not fit its parent", root, off, ErrCorrupt, child)
		}
		n = next
	}
}

// IndexSize returns the image size and chunk size of an index.
func (s *Store) IndexSize(root ID) (size uint64, chunkSize int, err error) {
	n, err := s.GetIndexNode(root)
	if err != nil {
		return 0, 0, err
	}
	return n.Size, n.ChunkSize, nil
}

// IndexChunks calls fn for every chunk of an index in offset order, holes
// included, without reading chunk data.
func (s *Store) IndexChunks(root ID, fn func(Chunk) error) error {
	n, err := s.GetIndexNode(root)
	if err != nil {
		return err
	}
	return s.walkIndex(n, 0, fn)
}

func (s *Store) walkIndex(n *IndexNode, base uint64, fn func(Chunk) error) error {
	span := n.ChildSpan()
	for i, child := range n.Children {
		start := base + uint64(i)*span
		end := min(start+span, base+n.Size)
		if n.Level == 0 {
			c := Chunk{Offset: start, Len: int(end - start), ID: child, Hole: child.IsZero()}
			if err := fn(c); err != nil {
				return err
			}
			continue
		}
		if child.IsZero() {
			for off := start; off < end; off += uint64(n.ChunkSize) {
				if err := fn(Chunk{Offset: off, Len: int(min(uint64(n.ChunkSize), end-off)), Hole: true}); err != nil {
					return err
				}
			}
			continue
		}
		next, err := s.GetIndexNode(child)
		if err != nil {
			return err
		}
		if next.Level != n.Level-1 || next.Size != end-start {
			return fmt.Errorf("%w: index node %s does not fit its parent", ErrCorrupt, child)
		}
		if err := s.walkIndex(next, start, fn); err != nil {
			return err
		}
	}
	return nil
}

// ExtractIndex writes the image of an index into w, reading chunks in
// parallel. Holes are skipped, so w must read as zeros where nothing is
// written: a new or truncated file does.
func (s *Store) ExtractIndex(root ID, w io.WriterAt) error {
	work := make(chan Chunk, 64)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				kind, data, err := s.Get(c.ID)
				if err == nil && (kind != KindChunk || len(data) != c.Len) {
					err = fmt.Errorf("%w: object %s at offset %#x is a %s of %d bytes, want a chunk of %d", ErrCorrupt, c.ID, c.Offset, kind, len(data), c.Len)
				}
				if err == nil {
					_, err = w.WriteAt(data, int64(c.Offset))
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	walkErr := s.IndexChunks(root, func(c Chunk) error {
		select {
		case err := <-errs:
			return err
		default:
		}
		if !c.Hole {
			work <- c
		}
		return nil
	})
	close(work)
	wg.Wait()
	if walkErr != nil {
		return fmt.Errorf("extract index %s: %w", root, walkErr)
	}
	select {
	case err := <-errs:
		return fmt.Errorf("extract index %s: %w", root, err)
	default:
	}
	return nil
}

// ExtractIndexToFile writes the image of an index to a new file at path,
// sparse where the index has holes.
func (s *Store) ExtractIndexToFile(root ID, path string) error {
	size, _, err := s.IndexSize(root)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return err
	}
	if err := s.ExtractIndex(root, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
