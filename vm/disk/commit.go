package disk

import (
	"fmt"
	"math/bits"

	"github.com/spore-vm/spore/objects"
)

// commitBatchChunks bounds the chunk data that one UpdateIndex call holds
// in memory: 1024 chunks of 64 KiB are 64 MiB.
const commitBatchChunks = 1024

// CommitStats counts what a Commit stored.
type CommitStats struct {
	// DirtyChunks is the number of chunks written since the last commit,
	// and DirtyBytes their size: what Commit reads from the overlay.
	DirtyChunks int64 `json:"dirty_chunks"`
	DirtyBytes  int64 `json:"dirty_bytes"`
	// Store counts the chunk and index objects that were not stored yet.
	// A dirty chunk whose content is already stored (rewritten with the
	// same bytes, or equal to a chunk of another disk) is not written.
	Store objects.WriteStats `json:"store"`
}

// Commit stores the chunks written since the last Commit on top of the
// base index and returns the new index, which becomes the base. Only the
// dirty chunks and the index nodes above them are written. When it fails,
// the base and the dirty chunks stay as they were, so a later Commit
// stores them again.
func (d *Disk) Commit() (objects.ID, CommitStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var stats CommitStats
	if d.closed {
		return objects.ZeroID, stats, fmt.Errorf("disk: commit of a closed disk")
	}

	index := d.base
	changes := map[uint64][]byte{}
	flush := func() error {
		if len(changes) == 0 {
			return nil
		}
		id, ws, err := d.store.UpdateIndex(index, changes)
		if err != nil {
			return fmt.Errorf("disk: store %d chunks on index %s: %w", len(changes), index.Short(), err)
		}
		addWriteStats(&stats.Store, ws)
		index = id
		clear(changes)
		return nil
	}

	for word, set := range d.dirty {
		for set != 0 {
			bit := bits.TrailingZeros64(set)
			set &^= 1 << bit
			chunk := int64(word*64 + bit)

			data := make([]byte, d.chunkLen(chunk))
			off := chunk * int64(d.chunkSize)
			if _, err := d.overlay.ReadAt(data, off); err != nil {
				return objects.ZeroID, stats, fmt.Errorf("disk: read the overlay at %#x: %w", off, err)
			}
			changes[uint64(off)] = data
			stats.DirtyChunks++
			stats.DirtyBytes += int64(len(data))

			if len(changes) >= commitBatchChunks {
				if err := flush(); err != nil {
					return objects.ZeroID, stats, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return objects.ZeroID, stats, err
	}

	clear(d.dirty)
	d.base = index
	return index, stats, nil
}

// addWriteStats adds the counters of b to a.
func addWriteStats(a *objects.WriteStats, b objects.WriteStats) {
	a.Chunks += b.Chunks
	a.Holes += b.Holes
	a.ChunksWritten += b.ChunksWritten
	a.NodesWritten += b.NodesWritten
	a.BytesWritten += b.BytesWritten
	a.DataBytesWritten += b.DataBytesWritten
}
