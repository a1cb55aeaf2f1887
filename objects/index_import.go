package objects

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

// IndexOptions sets the geometry of a new chunk index and the parallelism
// of the import.
type IndexOptions struct {
	// ChunkSize is the chunk size in bytes, a power of two from 4 KiB to
	// 16 MiB. Zero means DefaultChunkSize.
	ChunkSize int
	// Fanout is the number of children per index node, 2 to 4096. Zero
	// means DefaultFanout.
	Fanout int
	// Workers is the number of goroutines that read, hash and compress.
	// Zero means GOMAXPROCS.
	Workers int
}

func (o IndexOptions) withDefaults() (IndexOptions, error) {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Fanout == 0 {
		o.Fanout = DefaultFanout
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	probe := IndexNode{ChunkSize: o.ChunkSize, Fanout: o.Fanout}
	if err := probe.validate(); err != nil {
		return o, fmt.Errorf("invalid index options: %v", err)
	}
	return o, nil
}

// chunksPerRead is how many chunks a worker reads with one ReadAt.
const chunksPerRead = 64

// ImportImage stores an image of size bytes read from r as a chunk index
// and returns the index root. All-zero chunks become holes. Chunks and
// index nodes that are stored already are not written again, so importing
// an image whose parent is stored writes only the changed chunks and the
// index nodes above them. Hashing and compression run on opts.Workers
// goroutines.
func (s *Store) ImportImage(r io.ReaderAt, size int64, opts IndexOptions) (ID, WriteStats, error) {
	var stats WriteStats
	opts, err := opts.withDefaults()
	if err != nil {
		return ZeroID, stats, err
	}
	if size < 0 {
		return ZeroID, stats, fmt.Errorf("import image: negative size %d", size)
	}
	chunkSize := int64(opts.ChunkSize)
	nChunks := (size + chunkSize - 1) / chunkSize
	ids := make([]ID, nChunks)

	var next atomic.Int64
	var fail firstError
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local WriteStats
			buf := make([]byte, chunksPerRead*chunkSize)
			chunks := make([][]byte, 0, chunksPerRead)
			for !fail.failed() {
				first := next.Add(chunksPerRead) - chunksPerRead
				if first >= nChunks {
					break
				}
				start := first * chunkSize
				end := min(start+int64(len(buf)), size)
				n, err := r.ReadAt(buf[:end-start], start)
				if int64(n) < end-start {
					if err == nil || errors.Is(err, io.EOF) {
						err = io.ErrUnexpectedEOF
					}
					fail.set(fmt.Errorf("import image: read %d bytes at offset %d: %w", end-start, start, err))
					break
				}
				chunks = chunks[:0]
				for off := int64(0); off < end-start; off += chunkSize {
					chunks = append(chunks, buf[off:min(off+chunkSize, end-start)])
				}
				got, err := s.putChunks(chunks, &local)
				if err != nil {
					fail.set(fmt.Errorf("import image: store chunks at offset %d: %w", start, err))
					break
				}
				copy(ids[first:], got)
			}
			stats.add(&local)
		}()
	}
	wg.Wait()
	if fail.err != nil {
		return ZeroID, stats, fail.err
	}

	root, err := s.buildIndex(ids, uint64(size), opts, &stats)
	return root, stats, err
}

// ImportFile imports the regular file or block device at path.
func (s *Store) ImportFile(path string, opts IndexOptions) (ID, WriteStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return ZeroID, WriteStats{}, fmt.Errorf("import image: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return ZeroID, WriteStats{}, fmt.Errorf("import image %s: find size: %w", path, err)
	}
	return s.ImportImage(f, size, opts)
}

// buildIndex writes the index nodes above a list of chunk IDs, level by
// level, and returns the root. A node whose children are all holes becomes
// a hole in its parent; the root is always stored.
func (s *Store) buildIndex(children []ID, size uint64, opts IndexOptions, stats *WriteStats) (ID, error) {
	sizes := make([]uint64, len(children))
	for i := range sizes {
		sizes[i] = min(uint64(opts.ChunkSize), size-uint64(i)*uint64(opts.ChunkSize))
	}
	for level := 0; ; level++ {
		var nodes []*IndexNode
		var nodeSizes []uint64
		for i := 0; i < len(children) || (i == 0 && len(children) == 0); i += opts.Fanout {
			j := min(i+opts.Fanout, len(children))
			n := &IndexNode{Level: level, ChunkSize: opts.ChunkSize, Fanout: opts.Fanout, Children: children[i:j]}
			for _, sz := range sizes[i:j] {
				n.Size += sz
			}
			nodes = append(nodes, n)
			nodeSizes = append(nodeSizes, n.Size)
		}
		root := len(nodes) == 1
		var keep []*IndexNode
		var keepAt []int
		ids := make([]ID, len(nodes))
		for i, n := range nodes {
			if root || !allZero(n.Children) {
				keep = append(keep, n)
				keepAt = append(keepAt, i)
			}
		}
		got, err := s.putNodes(keep, stats)
		if err != nil {
			return ZeroID, fmt.Errorf("import image: store index nodes at level %d: %w", level, err)
		}
		for k, i := range keepAt {
			ids[i] = got[k]
		}
		if root {
			return ids[0], nil
		}
		if level+1 > maxLevel {
			return ZeroID, fmt.Errorf("import image: %d bytes need more than %d index levels; use a larger chunk size or fan-out", size, maxLevel+1)
		}
		children, sizes = ids, nodeSizes
	}
}

func allZero(ids []ID) bool {
	for _, id := range ids {
		if !id.IsZero() {
			return false
		}
	}
	return true
}
