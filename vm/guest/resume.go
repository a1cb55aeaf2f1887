package guest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/vm"
	"github.com/spore-vm/spore/vm/virtio"
)

// storePager serves guest RAM from a memory index in the store.
type storePager struct {
	store     *objects.Store
	index     objects.ID
	chunkSize int
}

func (p *storePager) ChunkSize() int { return p.chunkSize }

func (p *storePager) ReadChunk(off uint64) ([]byte, bool, error) {
	c, err := p.store.ReadChunk(p.index, off)
	if err != nil {
		return nil, false, err
	}
	return c.Data, c.Hole, nil
}

// Resume restores the commit id from the store into a running guest: the
// platform contract is checked first, then the machine state is loaded and
// memory is paged in from the store as the guest touches it. A root disk in
// the commit (disks/root) is opened copy-on-write over its chunks, so the
// guest's writes diverge from every other guest of the commit. opts.RootFS
// and opts.Store are ignored then. name is what the user called the
// commit, for error messages. The root file system is thawed and the
// guest's clock is set from the host before Resume returns.
func Resume(ctx context.Context, store *objects.Store, id objects.ID, name string, opts Options) (*Guest, error) {
	commit, err := store.GetCommit(id)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", name, err)
	}
	if err := vm.CheckPlatform(name, commit.Platform); err != nil {
		return nil, err
	}
	tree, err := store.GetTree(commit.Tree)
	if err != nil {
		return nil, fmt.Errorf("read the tree of %s: %w", name, err)
	}
	snap, config, memory, err := loadState(store, tree)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	session, err := loadSession(store, tree)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	identity, err := loadIdentity(store, tree)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	_, chunkSize, err := store.IndexSize(memory)
	if err != nil {
		return nil, fmt.Errorf("read the memory index of %s: %w", name, err)
	}

	opts.VCPUs = config.VCPUs
	opts.MemoryBytes = config.MemoryBytes
	rootIndex, hasRootDisk := tree.Entry(entryRootDisk)
	switch {
	case hasRootDisk:
		opts.Store, opts.RootFS, opts.RootFSWritable = store, "", config.RootFSWritable
	case opts.RootFS == "":
		// A commit of a guest whose root disk file was used in place.
		opts.Store, opts.RootFS, opts.RootFSWritable = nil, config.RootFS, config.RootFSWritable
	}
	opts, err = opts.withDefaults(false)
	if err != nil {
		return nil, err
	}

	g := &Guest{logger: opts.Logger, done: make(chan struct{}), opts: opts,
		parent: id, parentMemory: memory, generation: commit.Generation, session: session,
		identity: identity}
	if hasRootDisk {
		err = g.openStoreDisk(opts, rootIndex.ID)
	} else if opts.RootFS != "" {
		err = g.openRootDisk(opts)
	}
	if err != nil {
		return nil, fmt.Errorf("open the root disk of %s: %w", name, err)
	}
	devices, console, err := g.devices(opts)
	if err != nil {
		g.closeDisk()
		return nil, err
	}
	if len(devices) != config.Devices {
		g.closeDisk()
		return nil, fmt.Errorf("%s has %d virtio devices, this guest would have %d: pass the same --rootfs", name, config.Devices, len(devices))
	}
	cfg := vm.Config{
		MemoryBytes: opts.MemoryBytes,
		VCPUs:       opts.VCPUs,
		Console:     opts.KernelLog,
		Devices:     devices,
		Logger:      opts.Logger,
	}
	var m *vm.Machine
	if opts.ShareMemory {
		g.sharedMemory, g.releaseMemory, err = acquireSharedMemory(store, memory, opts.MemoryBytes, chunkSize, opts.SharedMemoryDir, opts.Logger)
		if err == nil {
			m, err = vm.RestoreShared(cfg, snap, g.sharedMemory)
			if err != nil {
				g.releaseMemory()
			}
		}
	} else {
		pager := &storePager{store: store, index: memory, chunkSize: chunkSize}
		m, err = vm.Restore(cfg, snap, pager)
	}
	if err != nil {
		g.closeDisk()
		return nil, fmt.Errorf("restore %s: %w", name, err)
	}
	opts.Logger.Debug("guest restored", "commit", id, "memory", memory, "shared_memory", opts.ShareMemory,
		"shared_memory_dir", opts.SharedMemoryDir)
	g.start(m, console, opts)

	if err := g.connectAgent(ctx, console.Port(1), opts.AgentTimeout); err != nil {
		g.Kill()
		return nil, err
	}
	// The capture froze the root file system; nothing in the guest can
	// write to it, the identity hooks included, until it is thawed.
	if err := g.thawRootDisk(ctx); err != nil {
		g.Kill()
		return nil, err
	}
	if err := g.applyIdentity(ctx); err != nil {
		g.Kill()
		return nil, err
	}
	return g, nil
}

// applyIdentity sets the guest's wall clock from the host, adds fresh
// entropy and, for a fork child, gives it its identity. The guest slept
// through the time it spent in the store, and its RNG state is a copy of
// every other resume's. The agent starts no command before it is done.
func (g *Guest) applyIdentity(ctx context.Context) error {
	entropy := make([]byte, 64)
	rand.Read(entropy)
	req := agent.UnforkedIdentity()
	req.TimeUnixNs = time.Now().UnixNano()
	req.Entropy = entropy
	if g.generation != "" {
		req.Generation = g.generation
	}
	if id := g.identity; id != nil {
		req.Generation = id.GenerationID
		req.Hostname = id.Hostname
		req.Env = id.Env()
	}
	if err := g.client.SetIdentity(ctx, req); err != nil {
		return fmt.Errorf("set the resumed guest's identity %s: %w", req.Generation, err)
	}
	g.logger.Debug("guest identity applied", "generation", req.Generation, "hostname", req.Hostname)
	return nil
}

// Identity returns the fork identity of the resumed commit, or nil for a
// commit that was not forked.
func (g *Guest) Identity() *Identity { return g.identity }

// SavedSession returns the command that was running when the resumed
// commit was captured, or nil.
func (g *Guest) SavedSession() *SessionState { return g.session }

// loadSession reads the optional "agent" entry.
func loadSession(store *objects.Store, tree *objects.Tree) (*SessionState, error) {
	for _, e := range tree.Entries {
		if e.Name != entryAgent {
			continue
		}
		_, data, err := store.Get(e.ID)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", entryAgent, err)
		}
		var s SessionState
		if err := json.Unmarshal(data, &s); err != nil || s.Version != 1 {
			return nil, fmt.Errorf("decode %s: version %d, %v", entryAgent, s.Version, err)
		}
		return &s, nil
	}
	return nil, nil
}

// PagerStats returns the counters of the lazy memory restore.
func (g *Guest) PagerStats() vm.PagerStats { return g.machine.PagerStats() }

// Parent returns the commit the guest was restored from or last captured
// to, ZeroID for a freshly booted guest.
func (g *Guest) Parent() objects.ID { return g.parent }

// loadState decodes a commit's tree into a machine snapshot without memory,
// the board config and the memory index.
func loadState(store *objects.Store, tree *objects.Tree) (*vm.Snapshot, boardConfig, objects.ID, error) {
	var config boardConfig
	snap := &vm.Snapshot{}
	byName := map[string]objects.TreeEntry{}
	for _, e := range tree.Entries {
		byName[e.Name] = e
	}
	read := func(name string) ([]byte, error) {
		e, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("tree has no %s entry", name)
		}
		kind, data, err := store.Get(e.ID)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if kind != objects.KindChunk {
			return nil, fmt.Errorf("%s is a %v, expected a chunk", name, kind)
		}
		return data, nil
	}

	data, err := read(entryConfig)
	if err != nil {
		return nil, config, objects.ZeroID, err
	}
	if err := json.Unmarshal(data, &config); err != nil {
		return nil, config, objects.ZeroID, fmt.Errorf("decode config: %w", err)
	}
	if config.Version != 1 || config.VCPUs < 1 || config.MemoryBytes == 0 {
		return nil, config, objects.ZeroID, fmt.Errorf("unsupported config: version %d, %d vCPUs, %d bytes of RAM", config.Version, config.VCPUs, config.MemoryBytes)
	}
	snap.MemoryBytes = config.MemoryBytes

	for i := 0; i < config.VCPUs; i++ {
		data, err := read(fmt.Sprintf("%s%d", vcpuPrefix, i))
		if err != nil {
			return nil, config, objects.ZeroID, err
		}
		var cpu vm.VCPUState
		if err := cpu.UnmarshalBinary(data); err != nil {
			return nil, config, objects.ZeroID, fmt.Errorf("decode %s%d: %w", vcpuPrefix, i, err)
		}
		snap.CPUs = append(snap.CPUs, cpu)
	}
	if data, err = read(entryGIC); err != nil {
		return nil, config, objects.ZeroID, err
	}
	if err := snap.GIC.UnmarshalBinary(data); err != nil {
		return nil, config, objects.ZeroID, fmt.Errorf("decode %s: %w", entryGIC, err)
	}
	for i := 0; i < config.Devices; i++ {
		name := fmt.Sprintf("%s%d", virtioPrefix, i)
		data, err := read(name)
		if err != nil {
			return nil, config, objects.ZeroID, err
		}
		var dev virtio.TransportState
		if err := dev.UnmarshalBinary(data); err != nil {
			return nil, config, objects.ZeroID, fmt.Errorf("decode %s: %w", name, err)
		}
		snap.Devices = append(snap.Devices, dev)
	}

	memory, ok := byName[entryMemory]
	if !ok {
		return nil, config, objects.ZeroID, fmt.Errorf("tree has no %s entry", entryMemory)
	}
	return snap, config, memory.ID, nil
}
