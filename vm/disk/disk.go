// Package disk serves guest block devices from chunk indexes in the object
// store. A Disk reads unchanged chunks from its base index and keeps the
// guest's writes in a private overlay file, with one dirty bit per chunk,
// so that Commit stores only the chunks written since the last commit.
// Many guests can open the same index: they share its chunks in the store,
// and their writes diverge in their own overlays.
package disk

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"sync"

	"github.com/spore-vm/spore/objects"
)

// DefaultCacheChunks is the number of base chunks a Disk keeps in memory
// when Options.CacheChunks is zero: 256 chunks of 64 KiB are 16 MiB.
const DefaultCacheChunks = 256

// Options configures Open.
type Options struct {
	// ReadOnly rejects writes.
	ReadOnly bool
	// OverlayDir is the directory of the overlay file; empty means
	// os.TempDir(). The file is removed at once after it is created, so
	// nothing remains there when the process exits.
	OverlayDir string
	// CacheChunks is the number of base chunks kept in memory; zero means
	// DefaultCacheChunks.
	CacheChunks int
	// Logger receives errors of the read and write paths; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Disk is a copy-on-write disk over a chunk index. It implements the
// virtio.BlockBacking interface and is safe for concurrent use.
type Disk struct {
	store     *objects.Store
	size      int64
	chunkSize int
	readOnly  bool
	logger    *slog.Logger

	mu sync.Mutex
	// base is the index that chunks not in the overlay are read from: the
	// opened index until the first Commit, then the last committed one.
	base objects.ID
	// overlay holds every chunk the guest wrote, at its disk offset. It is
	// a sparse file, nil for a read-only disk.
	overlay *os.File
	// present has one bit per chunk whose current content is in the
	// overlay; dirty the subset written since the last Commit.
	present, dirty []uint64
	cache          *chunkCache
	closed         bool
}

// Open opens the disk whose content is the chunk index index. The index
// must be stored; its chunks are read on demand.
func Open(store *objects.Store, index objects.ID, opts Options) (*Disk, error) {
	size, chunkSize, err := store.IndexSize(index)
	if err != nil {
		return nil, fmt.Errorf("disk %s: read the index: %w", index.Short(), err)
	}
	if size > 1<<62 {
		return nil, fmt.Errorf("disk %s: size %d bytes is too large", index.Short(), size)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CacheChunks <= 0 {
		opts.CacheChunks = DefaultCacheChunks
	}

	chunks := (int64(size) + int64(chunkSize) - 1) / int64(chunkSize)
	d := &Disk{
		store:     store,
		size:      int64(size),
		chunkSize: chunkSize,
		readOnly:  opts.ReadOnly,
		logger:    opts.Logger,
		base:      index,
		present:   make([]uint64, (chunks+63)/64),
		dirty:     make([]uint64, (chunks+63)/64),
		cache:     newChunkCache(opts.CacheChunks),
	}
	if !opts.ReadOnly {
		f, err := os.CreateTemp(opts.OverlayDir, "spore-disk-*.overlay")
		if err != nil {
			return nil, fmt.Errorf("disk %s: create the write overlay: %w; set TMPDIR to a writable directory", index.Short(), err)
		}
		// The overlay lives only as long as the open file: a crash leaves
		// nothing behind.
		os.Remove(f.Name())
		// A sparse file of the disk size reads as zeros wherever nothing
		// was written, which is what a copy of a hole needs.
		if err := f.Truncate(d.size); err != nil {
			f.Close()
			return nil, fmt.Errorf("disk %s: size the write overlay: %w", index.Short(), err)
		}
		d.overlay = f
	}
	return d, nil
}

// Size returns the disk size in bytes.
func (d *Disk) Size() int64 { return d.size }

// ChunkSize returns the size of the disk's chunks in bytes.
func (d *Disk) ChunkSize() int { return d.chunkSize }

// Base returns the index the disk was opened from, or the index of the
// last Commit.
func (d *Disk) Base() objects.ID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.base
}

// DirtyChunks returns the number of chunks written since the last Commit.
func (d *Disk) DirtyChunks() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, w := range d.dirty {
		n += bits.OnesCount64(w)
	}
	return n
}

// ReadAt reads len(p) bytes at off, from the overlay for chunks the guest
// wrote and from the store for the others.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkRange("read", len(p), off); err != nil {
		return 0, err
	}

	done := 0
	for done < len(p) {
		pos := off + int64(done)
		chunk := pos / int64(d.chunkSize)
		within := pos % int64(d.chunkSize)
		n := min(len(p)-done, d.chunkLen(chunk)-int(within))

		if hasBit(d.present, chunk) {
			if _, err := d.overlay.ReadAt(p[done:done+n], pos); err != nil {
				return done, fmt.Errorf("disk: read the overlay at %#x: %w", pos, err)
			}
		} else {
			data, err := d.baseChunk(chunk)
			if err != nil {
				return done, err
			}
			if data == nil {
				clear(p[done : done+n])
			} else {
				copy(p[done:done+n], data[within:])
			}
		}
		done += n
	}
	return done, nil
}

// WriteAt writes p at off into the overlay. A chunk written for the first
// time is copied from the base first, unless p covers all of it.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.readOnly {
		return 0, errors.New("disk: write to a read-only disk")
	}
	if err := d.checkRange("write", len(p), off); err != nil {
		return 0, err
	}

	done := 0
	for done < len(p) {
		pos := off + int64(done)
		chunk := pos / int64(d.chunkSize)
		within := pos % int64(d.chunkSize)
		n := min(len(p)-done, d.chunkLen(chunk)-int(within))

		if !hasBit(d.present, chunk) && n < d.chunkLen(chunk) {
			if err := d.copyUp(chunk); err != nil {
				return done, err
			}
		}
		if _, err := d.overlay.WriteAt(p[done:done+n], pos); err != nil {
			return done, fmt.Errorf("disk: write the overlay at %#x: %w", pos, err)
		}
		setBit(d.present, chunk)
		setBit(d.dirty, chunk)
		done += n
	}
	return done, nil
}

// Flush returns nil: the overlay is not meant to survive the process, and
// writes become durable when Commit stores them.
func (d *Disk) Flush() error { return nil }

// Close releases the overlay and drops the guest's uncommitted writes.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.overlay != nil {
		return d.overlay.Close()
	}
	return nil
}

// checkRange rejects requests outside the disk and on a closed disk.
func (d *Disk) checkRange(op string, n int, off int64) error {
	if d.closed {
		return fmt.Errorf("disk: %s on a closed disk", op)
	}
	if off < 0 || int64(n) > d.size-off {
		return fmt.Errorf("disk: %s of %d bytes at %d is beyond the disk size of %d bytes", op, n, off, d.size)
	}
	return nil
}

// chunkLen returns the length of chunk: the chunk size, or less for the
// last chunk.
func (d *Disk) chunkLen(chunk int64) int {
	return int(min(int64(d.chunkSize), d.size-chunk*int64(d.chunkSize)))
}

// baseChunk returns the base content of chunk, or nil for a hole.
func (d *Disk) baseChunk(chunk int64) ([]byte, error) {
	if data, ok := d.cache.get(chunk); ok {
		return data, nil
	}
	off := uint64(chunk) * uint64(d.chunkSize)
	c, err := d.store.ReadChunk(d.base, off)
	if err != nil {
		d.logger.Error("disk: reading a chunk from the store failed", "index", d.base.String(), "offset", off, "error", err)
		return nil, fmt.Errorf("disk: read chunk at %#x of index %s: %w", off, d.base.Short(), err)
	}
	d.cache.add(chunk, c.Data)
	return c.Data, nil
}

// copyUp copies the base content of chunk into the overlay. A hole needs
// no copy: the overlay file reads as zeros where nothing was written.
func (d *Disk) copyUp(chunk int64) error {
	data, err := d.baseChunk(chunk)
	if err != nil || data == nil {
		return err
	}
	off := chunk * int64(d.chunkSize)
	if _, err := d.overlay.WriteAt(data, off); err != nil {
		return fmt.Errorf("disk: copy chunk at %#x into the overlay: %w", off, err)
	}
	return nil
}

func hasBit(bitmap []uint64, i int64) bool { return bitmap[i/64]&(1<<(i%64)) != 0 }
func setBit(bitmap []uint64, i int64)      { bitmap[i/64] |= 1 << (i % 64) }
