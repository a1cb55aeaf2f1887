// Package guest boots a spore guest, a Linux VM with spore's init and exec
// agent, and runs commands in it. It ties together the machine (package
// vm), the virtio devices, the guest initramfs and the agent client.
package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/guest-init/initrd"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/vm"
	"github.com/spore-vm/spore/vm/disk"
	"github.com/spore-vm/spore/vm/virtio"
)

// Defaults of Options.
const (
	DefaultMemoryBytes = 512 << 20
	DefaultVCPUs       = 1
	// DefaultAgentTimeout bounds the wait for the agent after boot. Boots
	// in the emulated testbed take tens of seconds.
	DefaultAgentTimeout = 5 * time.Minute
)

// baseCmdline is the kernel command line every guest gets. The gokrazy
// kernel also targets PCs and builds in the NCT6683 sensor driver, which
// probes legacy port I/O that this board does not have and would oops, so
// its initcall is disabled.
const baseCmdline = "console=ttyAMA0 panic=-1 quiet initcall_blacklist=sensors_nct6683_init"

// Options describes a guest to boot.
type Options struct {
	// Kernel is an arm64 Linux Image; nil means the managed default kernel.
	Kernel []byte
	// Initrd is the initramfs; nil means the embedded guest init.
	Initrd []byte
	// RootFS is an ext4 image for /dev/vda, mounted as the root file
	// system; empty runs the guest from the initramfs alone.
	RootFS string
	// RootFSWritable mounts RootFS read-write. With a Store, the guest's
	// writes go to a copy-on-write overlay and are kept only by Capture;
	// without one, they change the file. By default the disk is read-only.
	RootFSWritable bool
	// Store, when set, holds the root disk: RootFS is imported into it as
	// a chunk index at boot (once per version of the file) and captures
	// store the disk's changed chunks in the commit's disks/root entry.
	Store *objects.Store
	// MemoryBytes is the guest RAM size; 0 means DefaultMemoryBytes.
	MemoryBytes uint64
	// VCPUs is the vCPU count; 0 means DefaultVCPUs.
	VCPUs int
	// ExtraCmdline is appended to the kernel command line.
	ExtraCmdline string
	// KernelLog receives the guest kernel's and init's console output;
	// nil discards it.
	KernelLog io.Writer
	// AgentTimeout bounds the wait for the agent; 0 means
	// DefaultAgentTimeout.
	AgentTimeout time.Duration
	// Logger receives VMM logs; nil means slog.Default().
	Logger *slog.Logger
	// ShareMemory makes Resume map the commit's memory from a backing
	// that every guest of this process resumed from the same memory index
	// with ShareMemory maps too: pages no guest wrote are held once, and
	// each guest's writes stay its own. Boot ignores it.
	ShareMemory bool
	// SharedMemoryDir, with ShareMemory, makes the backing a file in this
	// directory on tmpfs, named after the memory index, that guests of
	// other processes of this user resumed with the same directory map
	// too (see vm.OpenSharedMemory). The last process to close it removes
	// it. vm.DefaultSharedMemoryDir returns the usual directory. Empty
	// keeps the backing a memfd, shared only within this process.
	SharedMemoryDir string
}

// Guest is a running guest with a connected agent.
type Guest struct {
	machine *vm.Machine
	client  *agent.Client
	logger  *slog.Logger

	// backing serves the root disk, nil without one: rootDisk for a disk
	// in the store, or fileDisk for a disk file used in place.
	backing  virtio.BlockBacking
	rootDisk *disk.Disk
	fileDisk *virtio.FileBacking
	// imported describes the import of the root disk image at boot.
	imported *disk.ImportResult
	// opts are the options the guest was booted with, after defaults.
	opts Options

	// parent is the commit this guest was restored from or last captured
	// to, and parentMemory that commit's memory index; ZeroID for a guest
	// that was booted and never captured. Capture uses them to write only
	// what changed.
	parent, parentMemory objects.ID
	// generation is the fork generation ID recorded in captures, and
	// identity the fork child this guest is (nil when not forked); captures
	// keep both.
	generation string
	identity   *Identity
	// session is the running command saved in the resumed commit, or nil.
	session *SessionState
	// sharedMemory is the backing that guest RAM maps with
	// Options.ShareMemory, or nil. releaseMemory drops this guest's
	// reference to it after the machine is closed.
	sharedMemory  *vm.SharedMemory
	releaseMemory func()
	// frozen is true while the root file system is frozen for a capture.
	frozen bool

	// done is closed when the machine stopped, and reason and err record why.
	done   chan struct{}
	reason vm.ExitReason
	err    error
	cancel context.CancelFunc
}

// Boot starts a guest and waits until its agent responds. The guest runs
// until Shutdown or until ctx is done.
func Boot(ctx context.Context, opts Options) (*Guest, error) {
	opts, err := opts.withDefaults(true)
	if err != nil {
		return nil, err
	}

	g := &Guest{logger: opts.Logger, done: make(chan struct{}), opts: opts}
	if opts.RootFS != "" {
		if err := g.openRootDisk(opts); err != nil {
			return nil, err
		}
	}
	devices, console, err := g.devices(opts)
	if err != nil {
		g.closeDisk()
		return nil, err
	}
	cmdline := baseCmdline
	if opts.RootFS != "" {
		mode := "ro"
		if opts.RootFSWritable {
			mode = "rw"
		}
		// The console and entropy devices come first, so the disk is the
		// only block device: /dev/vda.
		cmdline += " spore.root=/dev/vda spore.rootmode=" + mode
	}
	if opts.ExtraCmdline != "" {
		cmdline += " " + opts.ExtraCmdline
	}

	m, err := vm.New(vm.Config{
		Kernel:      opts.Kernel,
		Initrd:      opts.Initrd,
		Cmdline:     cmdline,
		MemoryBytes: opts.MemoryBytes,
		VCPUs:       opts.VCPUs,
		Console:     opts.KernelLog,
		Devices:     devices,
		Logger:      opts.Logger,
	})
	if err != nil {
		g.closeDisk()
		return nil, err
	}
	g.start(m, console, opts)

	if err := g.connectAgent(ctx, console.Port(1), opts.AgentTimeout); err != nil {
		g.Kill()
		return nil, err
	}
	return g, nil
}

// devices creates the guest's virtio devices in board order: the console
// (hvc0 and the agent port), the entropy device and the optional root disk.
func (g *Guest) devices(opts Options) ([]virtio.Device, *virtio.Console, error) {
	console, err := virtio.NewConsole([]virtio.ConsolePortConfig{
		{Console: true},
		{Name: agentPortName},
	}, opts.Logger)
	if err != nil {
		return nil, nil, err
	}
	devices := []virtio.Device{console, virtio.NewEntropy(nil, opts.Logger)}
	if g.backing != nil {
		disk, err := g.rootBlockDevice(opts)
		if err != nil {
			return nil, nil, err
		}
		devices = append(devices, disk)
	}
	return devices, console, nil
}

// start runs the machine in the background and drains hvc0.
func (g *Guest) start(m *vm.Machine, console *virtio.Console, opts Options) {
	g.machine = m
	drainConsole(opts.KernelLog, console)

	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		g.reason, g.err = m.Run(runCtx)
		close(g.done)
	}()
}

// agentPortName is the virtio-console port name the guest init looks for.
const agentPortName = "org.spore.agent"

// withDefaults fills unset options. bootAssets selects whether the kernel
// and initramfs are needed, which a restore does without.
func (opts Options) withDefaults(bootAssets bool) (Options, error) {
	if opts.MemoryBytes == 0 {
		opts.MemoryBytes = DefaultMemoryBytes
	}
	if opts.VCPUs == 0 {
		opts.VCPUs = DefaultVCPUs
	}
	if opts.AgentTimeout == 0 {
		opts.AgentTimeout = DefaultAgentTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.KernelLog == nil {
		opts.KernelLog = io.Discard
	}
	if bootAssets && opts.Kernel == nil {
		kernel, err := DefaultKernel()
		if err != nil {
			return opts, err
		}
		opts.Kernel = kernel
	}
	if bootAssets && opts.Initrd == nil {
		archive, err := defaultInitrd(opts.RootFS != "")
		if err != nil {
			return opts, err
		}
		opts.Initrd = archive
	}
	return opts, nil
}

// defaultInitrd returns the embedded guest init. Without a root disk it
// appends busybox, because the guest would otherwise have no shell.
func defaultInitrd(hasRootDisk bool) ([]byte, error) {
	base, err := initrd.Archive()
	if err != nil {
		return nil, err
	}
	if hasRootDisk {
		return base, nil
	}

	path, err := DefaultBusyboxPath()
	if err != nil {
		return nil, err
	}
	busybox, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	userland, err := userlandArchive(busybox)
	if err != nil {
		return nil, err
	}
	// The kernel unpacks concatenated cpio archives one after another.
	return append(append([]byte(nil), base...), userland...), nil
}

// connectAgent dials the agent on its port, giving up when the VM stops or
// the timeout expires.
func (g *Guest) connectAgent(ctx context.Context, port io.ReadWriter, timeout time.Duration) error {
	dialCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-g.done:
			cancel()
		case <-dialCtx.Done():
		}
	}()

	client, err := agent.Dial(dialCtx, port, port, agent.ClientOptions{
		Logger: log.New(slogWriter{g.logger}, "", 0),
	})
	if err != nil {
		select {
		case <-g.done:
			return fmt.Errorf("guest stopped before its agent responded (%v): %w", g.reason, errors.Join(g.err, err))
		default:
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("guest agent did not respond within %v; rerun with --console-log FILE or --debug to see the guest console\n%s",
				timeout, g.describeVCPUs())
		}
		return fmt.Errorf("connect to the guest agent: %w", err)
	}
	g.client = client
	return nil
}

// describeVCPUs reports the vCPUs and lazy memory faults of a guest that
// stopped responding: two samples a second apart, so a reader sees whether
// the program counters, counters, exits and faults move.
func (g *Guest) describeVCPUs() string {
	var b strings.Builder
	for sample := range 2 {
		if sample > 0 {
			time.Sleep(time.Second)
		}
		states, err := g.machine.DebugState(10 * time.Second)
		if err != nil {
			fmt.Fprintf(&b, "vCPU state: %v\n", err)
			break
		}
		for _, s := range states {
			fmt.Fprintf(&b, "sample %d %s\n", sample, s)
		}
		paged := g.machine.PagerStats()
		fmt.Fprintf(&b, "sample %d pager: %d faults, %d chunks copied, %d zeroed\n", sample, paged.Faults, paged.ChunksCopied, paged.ChunksZeroed)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Exec runs a command in the guest and returns its exit status.
func (g *Guest) Exec(ctx context.Context, req agent.Request, stdin io.Reader, stdout, stderr io.Writer) (agent.ExitStatus, error) {
	return g.client.Exec(ctx, req, stdin, stdout, stderr)
}

// Agent returns the agent client, for sessions with PTYs and signals.
func (g *Guest) Agent() *agent.Client { return g.client }

// Shutdown requests a power-off through the guest agent and waits until the VM stopped, or
// kills it when ctx is done first. It releases the VM.
func (g *Guest) Shutdown(ctx context.Context) error {
	if err := g.client.Poweroff(ctx); err != nil {
		g.logger.Debug("agent power-off request failed; stopping the VM", "err", err)
		g.cancel()
	}
	select {
	case <-g.done:
	case <-ctx.Done():
		g.cancel()
		<-g.done
	}
	return g.release()
}

// Kill stops the VM at once and releases it.
func (g *Guest) Kill() error {
	g.cancel()
	<-g.done
	return g.release()
}

func (g *Guest) release() error {
	if g.client != nil {
		g.client.Close()
	}
	err := g.machine.Close()
	if g.releaseMemory != nil {
		g.releaseMemory()
	}
	g.closeDisk()
	if g.err != nil {
		return g.err
	}
	return err
}

// slogWriter adapts a slog.Logger for the agent client's log.Logger.
type slogWriter struct{ logger *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.logger.Debug("agent client", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}
