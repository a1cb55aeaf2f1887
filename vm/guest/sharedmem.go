package guest

import (
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
}{byIndex: map[sharedKey]*sharedBacking{}}

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
// processes share, or a memfd when dir is "".
func acquireSharedMemory(store *objects.Store, index objects.ID, size uint64, chunkSize int, dir string, logger *slog.Logger) (*vm.SharedMemory, func(), error) {
	key := sharedKey{store: store, index: index, dir: dir}

	sharedBackings.Lock()
	defer sharedBackings.Unlock()
	b, ok := sharedBackings.byIndex[key]
	if !ok {
		pager := &storePager{store: store, index: index, chunkSize: chunkSize}
		var memory *vm.SharedMemory
		var err error
		if dir == "" {
			memory, err = vm.NewSharedMemory(size, pager)
		} else {
			memory, err = vm.OpenSharedMemory(dir, index.String(), size, pager, logger)
		}
		if err != nil {
			return nil, nil, err
		}
		logger.Debug("shared guest memory opened", "index", index, "file", memory.Path())
		b = &sharedBacking{memory: memory}
		sharedBackings.byIndex[key] = b
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
