package guest

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spore-vm/spore/vm"
	"github.com/spore-vm/spore/vm/virtio"
)

// Snapshot is a paused guest's state: the machine and the device layout
// needed to rebuild it.
type Snapshot struct {
	Machine *vm.Snapshot
	// VCPUs and MemoryBytes repeat the board, for building the machine.
	VCPUs       int
	MemoryBytes uint64
	// RootFS and RootFSWritable describe the root disk, which is reopened
	// on restore.
	RootFS         string
	RootFSWritable bool
}

// Snapshot pauses the guest and reads its state. The guest stays paused;
// call Kill to drop it or Continue to let it run on.
//
// Commands running in the guest are frozen with it; the agent's sessions
// continue after a restore.
func (g *Guest) Snapshot() (*Snapshot, error) {
	if g.rootDisk != nil {
		return nil, errors.New("in-process snapshots of a guest with its root disk in the store are not supported: use Capture")
	}
	if err := g.machine.Pause(); err != nil {
		return nil, err
	}
	ms, err := g.machine.Snapshot()
	if err != nil {
		g.machine.Resume()
		return nil, err
	}
	return &Snapshot{
		Machine:        ms,
		VCPUs:          g.opts.VCPUs,
		MemoryBytes:    g.opts.MemoryBytes,
		RootFS:         g.opts.RootFS,
		RootFSWritable: g.opts.RootFSWritable,
	}, nil
}

// Continue resumes a guest paused by Snapshot or Capture, and thaws the
// root file system that Capture froze. A failed thaw is logged: the guest
// runs on, but its writes to the root disk block.
func (g *Guest) Continue() {
	g.machine.Resume()
	if !g.frozen {
		return
	}
	g.frozen = false
	if err := g.thawRootDisk(context.Background()); err != nil {
		g.logger.Error("thaw after capture failed; writes to the root disk block", "commit", g.parent.String(), "error", err)
	}
}

// Restore starts a guest from a snapshot and reconnects to its agent.
// opts supplies the host side: logs and time limits; the board and the
// root disk come from the snapshot.
func Restore(ctx context.Context, s *Snapshot, opts Options) (*Guest, error) {
	opts.VCPUs = s.VCPUs
	opts.MemoryBytes = s.MemoryBytes
	opts.RootFS = s.RootFS
	opts.RootFSWritable = s.RootFSWritable
	// The kernel and initramfs are already in the snapshot's memory.
	opts, err := opts.withDefaults(false)
	if err != nil {
		return nil, err
	}

	g := &Guest{logger: opts.Logger, done: make(chan struct{}), opts: opts}
	devices, console, err := g.devices(opts)
	if err != nil {
		return nil, err
	}
	m, err := vm.Restore(vm.Config{
		MemoryBytes: opts.MemoryBytes,
		VCPUs:       opts.VCPUs,
		Console:     opts.KernelLog,
		Devices:     devices,
		Logger:      opts.Logger,
	}, s.Machine, nil)
	if err != nil {
		g.closeDisk()
		return nil, fmt.Errorf("restore guest: %w", err)
	}
	g.start(m, console, opts)

	if err := g.connectAgent(ctx, console.Port(1), opts.AgentTimeout); err != nil {
		g.Kill()
		return nil, err
	}
	return g, nil
}

// drainConsole copies hvc0's output to w, because the guest blocks when
// the host does not read it.
func drainConsole(w io.Writer, console *virtio.Console) {
	go io.Copy(w, console.Port(0))
}
