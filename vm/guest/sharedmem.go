package guest

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/vm"
)

// sharedBackings are the shared guest RAM backings of this process, one per
// store, memory index and directory, counted by the guests that map them.
var sharedBackings = struct {
	sync.Mutex
	byIndex map[sharedKey]*sharedBacking
	// unusable has the file backings that failed with
	// vm.ErrSharedMemoryFile, so later guests use a memfd without trying
	// and warning again.
	unusable map[sharedKey]bool
}{byIndex: map[sharedKey]*sharedBacking{}, unusable: map[sharedKey]bool{}}

// sharedKey names a backing. The store is part of the key because the
// backing's pager reads from it, and a store may be closed while another
// store with the same memory index is still in use. dir is the directory
// of a file backing, "" for a memfd.
type sharedKey struct {
	store *objects.Store
	index objects.ID
	dir   string
}

type sharedBacking struct {
	memory *vm.SharedMemory
	guests int
}

// acquireSharedMemory returns the backing of the memory index, creating it
// when no guest of this process maps it, and a function that releases it
// once the guest's machine is closed. The last release closes the backing.
// The backing is a file in dir named after the index, which other
// processes share, or a memfd when dir is "". When the file cannot be used
// (vm.ErrSharedMemoryFile: a directory of another user or open to others,
// for example), the guest gets a memfd and a warning, so that a directory
// another user created cannot stop every resume.
func acquireSharedMemory(store *objects.Store, index objects.ID, size uint64, chunkSize int, dir string, logger *slog.Logger) (*vm.SharedMemory, func(), error) {
	sharedBackings.Lock()
	defer sharedBackings.Unlock()

	pager := &storePager{store: store, index: index, chunkSize: chunkSize}
	key := sharedKey{store: store, index: index, dir: dir}
	b, ok := sharedBackings.byIndex[key]
	if !ok && sharedBackings.unusable[key] {
		key.dir = ""
		b = sharedBackings.byIndex[key]
	} else if !ok && dir != "" {
		memory, err := vm.OpenSharedMemory(dir, index.String(), size, pager, logger)
		switch {
		case err == nil:
			b = &sharedBacking{memory: memory}
			sharedBackings.byIndex[key] = b
		case errors.Is(err, vm.ErrSharedMemoryFile):
			logger.Warn("guest memory is shared only within this process, because the shared memory file cannot be used (--no-share-memory turns sharing off)",
				"index", index, "err", err)
			sharedBackings.unusable[key] = true
			key.dir = ""
			b = sharedBackings.byIndex[key]
		default:
			return nil, nil, err
		}
	}
	if b == nil {
		memory, err := vm.NewSharedMemory(size, pager)
		if err != nil {
			return nil, nil, err
		}
		b = &sharedBacking{memory: memory}
		sharedBackings.byIndex[key] = b
	}
	if !ok {
		logger.Debug("shared guest memory opened", "index", index, "file", b.memory.Path())
	}
	b.guests++

	var once sync.Once
	release := func() {
		once.Do(func() {
			sharedBackings.Lock()
			defer sharedBackings.Unlock()
			b.guests--
			if b.guests == 0 {
				delete(sharedBackings.byIndex, key)
				if err := b.memory.Close(); err != nil {
					logger.Warn("closing shared guest memory failed", "index", index, "err", err)
				}
			}
		})
	}
	return b.memory, release, nil
}

// SharedMemoryStats returns the counters of the shared backing the guest
// maps, and false for a guest resumed without Options.ShareMemory. The
// backing is the same for every guest of this process resumed from the
// same memory index.
func (g *Guest) SharedMemoryStats() (vm.SharedMemoryStats, bool) {
	if g.sharedMemory == nil {
		return vm.SharedMemoryStats{}, false
	}
	return g.sharedMemory.Stats(), true
}

// MemoryUsage returns the host memory used by the guest's RAM mapping.
func (g *Guest) MemoryUsage() (vm.MemoryUsage, error) { return g.machine.MemoryUsage() }

// PrivatePages returns the guest physical addresses of the RAM pages the
// guest holds private copies of; see vm.Machine.PrivatePages.
func (g *Guest) PrivatePages() ([]uint64, error) { return g.machine.PrivatePages() }
