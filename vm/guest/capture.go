package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/vm"
	"github.com/spore-vm/spore/vm/disk"
)

// Tree entry names of a captured commit.
const (
	entryAgent   = "agent"
	entryConfig  = "config"
	entryMemory  = "memory"
	entryGIC     = "devices/gic"
	vcpuPrefix   = "vcpu/"
	virtioPrefix = "devices/virtio"
)

// boardConfig is the "config" entry of a commit: what a restore needs to
// rebuild the machine around the saved state.
type boardConfig struct {
	Version     int    `json:"version"`
	MemoryBytes uint64 `json:"memory_bytes"`
	VCPUs       int    `json:"vcpus"`
	// RootFS is the path of a root disk file used in place. It is empty
	// when the root disk is in the store as the disks/root entry.
	RootFS         string `json:"rootfs,omitempty"`
	RootFSWritable bool   `json:"rootfs_writable,omitempty"`
	Devices        int    `json:"virtio_devices"`
}

// CaptureOptions are the store, ref and message of a capture.
type CaptureOptions struct {
	Store *objects.Store
	Refs  *refs.Refs
	// Ref is the full name of the ref to point at the new commit, such as
	// refs/heads/base; empty writes the commit without a ref.
	Ref     string
	Author  string
	Message string
	// Session, when set, is a command still running in the guest. Its
	// session ID and stream offsets are saved in the commit's "agent"
	// entry, so a resume can attach to it and continue its output. The
	// agent connection is closed by the capture.
	Session *agent.Session
}

// SessionState is a running command saved in a commit.
type SessionState struct {
	Version int    `json:"version"`
	Session uint32 `json:"session"`
	// StdoutOffset and StderrOffset count the output bytes the host had
	// received at capture time; an attach continues from there.
	StdoutOffset uint64 `json:"stdout_offset"`
	StderrOffset uint64 `json:"stderr_offset"`
}

// CaptureStats describe what a capture wrote.
type CaptureStats struct {
	// Incremental is true when only chunks with dirty pages were written
	// on top of the parent's memory.
	Incremental bool `json:"incremental"`
	// DirtyPages counts the 4 KiB pages written since the parent commit
	// (or since boot); DirtyChunkBytes is the size of the chunks that hold
	// them, the unit the store writes.
	DirtyPages      uint64 `json:"dirty_pages"`
	DirtyChunkBytes uint64 `json:"dirty_chunk_bytes"`
	// Memory counts the chunk and index objects written for RAM.
	Memory objects.WriteStats `json:"memory"`
	// StateBytes is the encoded size of the vCPU, vGIC and device states.
	StateBytes int `json:"state_bytes"`
	// RootDisk counts the root disk chunks written since the parent
	// commit (or since boot) and the objects that storing them wrote. It
	// is nil without a root disk in the store.
	RootDisk *disk.CommitStats `json:"root_disk,omitempty"`
}

// Capture pauses the guest and commits its state to the store: vCPUs, vGIC,
// devices, memory and the root disk. After a restore from a commit, only
// memory and disk chunks written since then are stored. A writable root
// disk is synced and frozen through the agent first. The guest stays paused
// and frozen: Continue thaws and resumes it, and later captures are
// children of this one.
func (g *Guest) Capture(opts CaptureOptions) (objects.ID, CaptureStats, error) {
	var stats CaptureStats
	frozen, err := g.freezeRootDisk()
	if err != nil {
		return objects.ZeroID, stats, err
	}
	if err := g.machine.Pause(); err != nil {
		if frozen {
			g.thawRootDisk(context.Background())
		}
		return objects.ZeroID, stats, err
	}
	g.frozen = frozen
	state, err := g.machine.SnapshotState()
	if err != nil {
		return objects.ZeroID, stats, err
	}

	memory, err := g.captureMemory(opts.Store, &stats)
	if err != nil {
		return objects.ZeroID, stats, err
	}
	entries, err := g.stateEntries(opts.Store, state, &stats)
	if err != nil {
		return objects.ZeroID, stats, err
	}
	if opts.Session != nil {
		entry, err := g.sessionEntry(opts.Store, opts.Session)
		if err != nil {
			return objects.ZeroID, stats, err
		}
		entries = append(entries, entry)
	}
	if g.identity != nil {
		entry, err := identityEntry(opts.Store, g.identity)
		if err != nil {
			return objects.ZeroID, stats, err
		}
		entries = append(entries, entry)
	}
	entries = append(entries, objects.TreeEntry{Name: entryMemory, Kind: objects.KindTree, ID: memory})
	diskEntries, err := g.captureRootDisk(&stats)
	if err != nil {
		return objects.ZeroID, stats, err
	}
	entries = append(entries, diskEntries...)

	tree, err := objects.NewTree(entries)
	if err != nil {
		return objects.ZeroID, stats, err
	}
	treeID, err := opts.Store.PutTree(tree)
	if err != nil {
		return objects.ZeroID, stats, err
	}
	commit := &objects.Commit{
		Tree:       treeID,
		Platform:   state.Platform(),
		Generation: g.generation,
		Time:       time.Now().UTC(),
		Author:     opts.Author,
		Message:    opts.Message,
	}
	if g.parent != objects.ZeroID {
		commit.Parents = []objects.ID{g.parent}
	}
	id, err := opts.Store.PutCommit(commit)
	if err != nil {
		return objects.ZeroID, stats, err
	}

	if opts.Ref != "" {
		if err := moveRef(opts.Refs, opts.Ref, id); err != nil {
			return id, stats, err
		}
	}
	g.parent, g.parentMemory = id, memory
	g.logger.Debug("guest captured", "commit", id.String(), "ref", opts.Ref, "incremental", stats.Incremental,
		"dirty_pages", stats.DirtyPages, "bytes_written", stats.Memory.BytesWritten)
	return id, stats, nil
}

// sessionEntry closes the agent connection, which makes the session's
// output offsets final, and stores them. The guest is paused, so the agent
// keeps every byte past these offsets until a later connection takes it.
func (g *Guest) sessionEntry(store *objects.Store, session *agent.Session) (objects.TreeEntry, error) {
	g.client.Close()
	stdout, stderr := session.Offsets()
	data, err := json.Marshal(SessionState{Version: 1, Session: session.ID(), StdoutOffset: stdout, StderrOffset: stderr})
	if err != nil {
		return objects.TreeEntry{}, err
	}
	id, err := store.Put(objects.KindChunk, data)
	if err != nil {
		return objects.TreeEntry{}, fmt.Errorf("store %s: %w", entryAgent, err)
	}
	return objects.TreeEntry{Name: entryAgent, Kind: objects.KindChunk, ID: id}, nil
}

// moveRef points ref at id if it still has the value read just before, so
// a concurrent update is reported instead of lost.
func moveRef(r *refs.Refs, ref string, id objects.ID) error {
	old, err := r.Resolve(ref)
	if errors.Is(err, objects.ErrNotFound) {
		old = objects.ZeroID
	} else if err != nil {
		return err
	}
	return r.Set(ref, old, id, "capture")
}

// captureMemory stores guest RAM: the chunks with dirty pages on top of the
// parent's memory index, or the whole of RAM for a first capture.
func (g *Guest) captureMemory(store *objects.Store, stats *CaptureStats) (objects.ID, error) {
	dirty, err := g.machine.DirtyPages()
	if err != nil {
		return objects.ZeroID, err
	}
	for _, word := range dirty {
		stats.DirtyPages += uint64(bits.OnesCount64(word))
	}

	if g.parentMemory == objects.ZeroID {
		size := int64(g.machine.MemorySize())
		id, ws, err := store.ImportImage(io.NewSectionReader(g.machine, 0, size), size, objects.IndexOptions{})
		stats.Memory = ws
		stats.DirtyChunkBytes = uint64(size)
		return id, err
	}

	stats.Incremental = true
	_, chunkSize, err := store.IndexSize(g.parentMemory)
	if err != nil {
		return objects.ZeroID, err
	}
	changes := map[uint64][]byte{}
	for word, bitsSet := range dirty {
		for bitsSet != 0 {
			bit := bits.TrailingZeros64(bitsSet)
			bitsSet &^= 1 << bit
			page := uint64(word*64 + bit)
			off := page * pageSize / uint64(chunkSize) * uint64(chunkSize)
			if _, seen := changes[off]; seen {
				continue
			}
			length := min(uint64(chunkSize), g.machine.MemorySize()-off)
			data := make([]byte, length)
			if _, err := g.machine.ReadAt(data, int64(off)); err != nil {
				return objects.ZeroID, fmt.Errorf("read guest RAM at %#x: %w", off, err)
			}
			changes[off] = data
			stats.DirtyChunkBytes += length
		}
	}
	id, ws, err := store.UpdateIndex(g.parentMemory, changes)
	stats.Memory = ws
	return id, err
}

// pageSize is the granularity of the dirty bitmap.
const pageSize = 4096

// stateEntries stores the config, vCPU, vGIC and device states as chunks
// and returns their tree entries.
func (g *Guest) stateEntries(store *objects.Store, s *vm.Snapshot, stats *CaptureStats) ([]objects.TreeEntry, error) {
	var entries []objects.TreeEntry
	put := func(name string, data []byte) error {
		stats.StateBytes += len(data)
		id, err := store.Put(objects.KindChunk, data)
		if err != nil {
			return fmt.Errorf("store %s: %w", name, err)
		}
		entries = append(entries, objects.TreeEntry{Name: name, Kind: objects.KindChunk, ID: id})
		return nil
	}

	config := boardConfig{
		Version:        1,
		MemoryBytes:    s.MemoryBytes,
		VCPUs:          len(s.CPUs),
		RootFSWritable: g.opts.RootFSWritable,
		Devices:        len(s.Devices),
	}
	if g.fileDisk != nil {
		config.RootFS = g.opts.RootFS
	}
	data, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	if err := put(entryConfig, data); err != nil {
		return nil, err
	}
	for i, cpu := range s.CPUs {
		data, _ := cpu.MarshalBinary()
		if err := put(fmt.Sprintf("%s%d", vcpuPrefix, i), data); err != nil {
			return nil, err
		}
	}
	gic, _ := s.GIC.MarshalBinary()
	if err := put(entryGIC, gic); err != nil {
		return nil, err
	}
	for i, dev := range s.Devices {
		data, err := dev.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode virtio device %d: %w", i, err)
		}
		if err := put(fmt.Sprintf("%s%d", virtioPrefix, i), data); err != nil {
			return nil, err
		}
	}
	return entries, nil
}
