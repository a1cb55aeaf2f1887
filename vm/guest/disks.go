package guest

import (
	"context"
	"fmt"
	"time"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/vm/disk"
	"github.com/spore-vm/spore/vm/virtio"
)

// entryRootDisk is the tree entry of the root disk's chunk index.
const entryRootDisk = "disks/root"

// freezeTimeout bounds the agent's sync and freeze before a capture, and
// its thaw after a resume. A sync of many dirty pages in the emulated
// testbed takes seconds.
const freezeTimeout = 2 * time.Minute

// rootDiskID is the virtio-blk serial of the root disk.
const rootDiskID = "spore-root"

// openRootDisk opens the root disk of a booting guest. With a store, the
// image file is imported into it (or found there from an earlier import)
// and the guest runs on a copy-on-write disk over its chunks. Without one,
// the file itself backs the disk and a writable guest changes it.
func (g *Guest) openRootDisk(opts Options) error {
	if opts.Store == nil {
		backing, err := virtio.OpenFileBacking(opts.RootFS, !opts.RootFSWritable)
		if err != nil {
			return fmt.Errorf("root disk: %w", err)
		}
		g.fileDisk, g.backing = backing, backing
		return nil
	}

	imported, err := disk.Import(opts.Store, refs.New(opts.Store.Backend()), opts.RootFS)
	if err != nil {
		return err
	}
	g.imported = &imported
	return g.openStoreDisk(opts, imported.Index)
}

// openStoreDisk opens the copy-on-write root disk over the chunk index.
func (g *Guest) openStoreDisk(opts Options, index objects.ID) error {
	d, err := disk.Open(opts.Store, index, disk.Options{ReadOnly: !opts.RootFSWritable, Logger: opts.Logger})
	if err != nil {
		return fmt.Errorf("root disk: %w", err)
	}
	g.rootDisk, g.backing = d, d
	g.logger.Debug("root disk opened", "index", index.String(), "writable", opts.RootFSWritable, "size", d.Size())
	return nil
}

// rootBlockDevice returns the virtio-blk device of the open root disk.
func (g *Guest) rootBlockDevice(opts Options) (virtio.Device, error) {
	dev, err := virtio.NewBlock(virtio.BlockConfig{Backing: g.backing, ReadOnly: !opts.RootFSWritable, ID: rootDiskID}, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("root disk %s: %w", opts.RootFS, err)
	}
	return dev, nil
}

// RootDiskImport returns how the root disk image was imported into the
// store at boot, or nil when the guest has no store disk or was resumed.
func (g *Guest) RootDiskImport() *disk.ImportResult { return g.imported }

// freezeRootDisk sends the agent a Freeze request to sync and freeze the root file system,
// so that the disk chunks a capture stores hold a clean file system that
// matches the page cache in the captured RAM. Read-only disks need no
// freeze. It reports whether it froze.
func (g *Guest) freezeRootDisk() (bool, error) {
	if g.rootDisk == nil || !g.opts.RootFSWritable {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), freezeTimeout)
	defer cancel()
	if err := g.client.Freeze(ctx); err != nil {
		return false, fmt.Errorf("quiesce the root disk before capture: %w", err)
	}
	g.logger.Debug("root file system frozen for capture")
	return true, nil
}

// thawRootDisk thaws the root file system. A resumed guest needs it first
// thing, because its snapshot was taken while the file system was frozen.
func (g *Guest) thawRootDisk(ctx context.Context) error {
	if g.rootDisk == nil || !g.opts.RootFSWritable {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, freezeTimeout)
	defer cancel()
	if err := g.client.Thaw(ctx); err != nil {
		return fmt.Errorf("thaw the root file system: %w", err)
	}
	return nil
}

// captureRootDisk stores the chunks of the root disk written since the
// last capture or resume, and returns its tree entry.
func (g *Guest) captureRootDisk(stats *CaptureStats) ([]objects.TreeEntry, error) {
	if g.rootDisk == nil {
		return nil, nil
	}
	index, ds, err := g.rootDisk.Commit()
	if err != nil {
		return nil, fmt.Errorf("capture the root disk: %w", err)
	}
	stats.RootDisk = &ds
	return []objects.TreeEntry{{Name: entryRootDisk, Kind: objects.KindTree, ID: index}}, nil
}

// closeDisk releases the root disk; a store disk drops its overlay.
func (g *Guest) closeDisk() {
	if g.fileDisk != nil {
		g.fileDisk.Close()
	}
	if g.rootDisk != nil {
		g.rootDisk.Close()
	}
}
