package objects

import (
	"bytes"
	"sync"
	"sync/atomic"
)

// WriteStats counts what a write of chunks and index nodes did.
type WriteStats struct {
	// Chunks is the number of chunks looked at, holes included.
	Chunks int64 `json:"chunks"`
	// Holes is the number of all-zero chunks, which are not stored.
	Holes int64 `json:"holes"`
	// ChunksWritten is the number of chunks that were not stored before.
	ChunksWritten int64 `json:"chunks_written"`
	// NodesWritten is the number of new index nodes.
	NodesWritten int64 `json:"nodes_written"`
	// BytesWritten is the stored size of the new objects, after compression.
	BytesWritten int64 `json:"bytes_written"`
	// DataBytesWritten is the uncompressed size of the new chunks.
	DataBytesWritten int64 `json:"data_bytes_written"`
}

func (w *WriteStats) add(o *WriteStats) {
	atomic.AddInt64(&w.Chunks, o.Chunks)
	atomic.AddInt64(&w.Holes, o.Holes)
	atomic.AddInt64(&w.ChunksWritten, o.ChunksWritten)
	atomic.AddInt64(&w.NodesWritten, o.NodesWritten)
	atomic.AddInt64(&w.BytesWritten, o.BytesWritten)
	atomic.AddInt64(&w.DataBytesWritten, o.DataBytesWritten)
}

var zeroPage [64 << 10]byte

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// putChunks hashes a group of chunks, skips holes and chunks that are
// stored already, and compresses and stores the rest in one batch. It
// returns the IDs (ZeroID for holes) in order.
func (s *Store) putChunks(chunks [][]byte, stats *WriteStats) ([]ID, error) {
	ids := make([]ID, len(chunks))
	var query []ID
	var queryIdx []int
	for i, c := range chunks {
		stats.Chunks++
		if isZero(c) {
			stats.Holes++
			continue
		}
		ids[i] = Hash(KindChunk, c)
		query = append(query, ids[i])
		queryIdx = append(queryIdx, i)
	}
	if len(query) == 0 {
		return ids, nil
	}
	have, err := s.backend.Has(query)
	if err != nil {
		return nil, err
	}
	var batch []StoredObject
	seen := make(map[ID]bool)
	for j, ok := range have {
		if ok || seen[query[j]] {
			continue
		}
		seen[query[j]] = true
		data := chunks[queryIdx[j]]
		val := encodeStored(KindChunk, data)
		batch = append(batch, StoredObject{ID: query[j], Value: val})
		stats.ChunksWritten++
		stats.BytesWritten += int64(len(val))
		stats.DataBytesWritten += int64(len(data))
	}
	if err := s.backend.Put(batch); err != nil {
		return nil, err
	}
	return ids, nil
}

// putNodes stores encoded index nodes that are not stored yet.
func (s *Store) putNodes(nodes []*IndexNode, stats *WriteStats) ([]ID, error) {
	ids := make([]ID, len(nodes))
	payloads := make([][]byte, len(nodes))
	for i, n := range nodes {
		payloads[i] = n.Encode()
		ids[i] = Hash(KindTree, payloads[i])
	}
	have, err := s.backend.Has(ids)
	if err != nil {
		return nil, err
	}
	var batch []StoredObject
	for i, ok := range have {
		if ok {
			continue
		}
		val := encodeStored(KindTree, payloads[i])
		batch = append(batch, StoredObject{ID: ids[i], Value: val})
		stats.NodesWritten++
		stats.BytesWritten += int64(len(val))
	}
	if err := s.backend.Put(batch); err != nil {
		return nil, err
	}
	for i, n := range nodes {
		s.nodes.add(ids[i], n)
	}
	return ids, nil
}

// firstError keeps the first error reported by parallel workers.
type firstError struct {
	mu  sync.Mutex
	err error
	bad atomic.Bool
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
		f.bad.Store(true)
	}
	f.mu.Unlock()
}

func (f *firstError) failed() bool { return f.bad.Load() }
