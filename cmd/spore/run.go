package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/vm"
	"github.com/spore-vm/spore/vm/disk"
	"github.com/spore-vm/spore/vm/guest"
	"github.com/spore-vm/spore/vm/rootfs"
)

// RunCmd boots a guest, runs one command in it and powers it off.
type RunCmd struct {
	Interactive    bool          `short:"i" help:"Forward stdin to the command. Without it the command reads EOF at once."`
	TTY            bool          `short:"t" name:"tty" help:"Run the command on a pseudo-terminal in the guest; stdout and stderr then arrive merged."`
	CPUs           *int          `name:"cpus" placeholder:"N" help:"Number of vCPUs of a booted guest (default 1). A guest resumed with --from keeps those of its commit."`
	Memory         string        `help:"Guest RAM of a booted guest, with a unit suffix K, M or G (binary units; default 512M). A guest resumed with --from keeps that of its commit."`
	Env            []string      `short:"e" sep:"none" placeholder:"KEY=VALUE" help:"Set an environment variable for the command (repeatable)."`
	Workdir        string        `short:"w" placeholder:"DIR" help:"Working directory of the command in the guest."`
	Timeout        time.Duration `placeholder:"DURATION" help:"Stop the guest and exit with status 124 after this long (such as 30s or 5m); 0 means no limit."`
	Kernel         string        `type:"existingfile" placeholder:"FILE" help:"Boot this arm64 kernel Image instead of the managed one."`
	Initrd         string        `type:"existingfile" placeholder:"FILE" help:"Use this initramfs instead of the embedded guest init."`
	RootFS         string        `name:"rootfs" type:"existingfile" placeholder:"FILE" help:"Mount this ext4 image as the guest's root file system (read-only unless --rootfs-writable). The image is imported into the store once per version of the file and the guest reads it from there."`
	RootFSWritable bool          `name:"rootfs-writable" help:"Mount the root disk read-write. The guest's changes stay out of the image: they are kept only in --capture commits."`
	Image          string        `placeholder:"REF" help:"Run in this arm64 OCI image: REGISTRY/REPO[:TAG|@DIGEST], or oci-layout:DIR[:TAG|@DIGEST]. Its root file system is built once and cached, and is writable: writes go to a copy-on-write layer that only --capture keeps. The image's Env and WorkingDir apply; its Entrypoint, Cmd and User do not."`
	From           string        `placeholder:"REV" help:"Resume the guest captured in this commit (a ref or commit ID) instead of booting."`
	ShareMemory    bool          `default:"true" negatable:"" help:"With --from: map guest memory from a file in /dev/shm/spore-UID that other spore processes resuming the same commit share, so pages no guest wrote are held once; the last process removes the file (--no-share-memory gives the guest its own copy)."`
	Capture        string        `placeholder:"REF" help:"When the command exits with status 0, capture the guest into a commit and point REF (refs/heads/REF unless it starts with refs/) at it."`
	Message        string        `short:"m" help:"Message of the --capture commit."`
	CaptureAfter   time.Duration `placeholder:"DURATION" help:"With --capture: capture the guest this long after the command started, while it runs, and stop. spore run --from REF without a command then attaches to it."`
	Command        []string      `arg:"" optional:"" passthrough:"" help:"The command: after --, an argv run exactly; a single argument without --, a string run with /bin/sh -lc."`
}

// Exit codes of spore run's own failures. They sit above the codes that
// commands usually return, because the command's status passes through.
const (
	ExitRunHostUnsupported = 121
	ExitRunBootFailed      = 122
	ExitRunTimeout         = 124
	ExitRunFailed          = 125
)

// runSummary is the --json record printed on stderr after the command.
type runSummary struct {
	ExitCode int   `json:"exit_code"`
	Signal   int   `json:"signal,omitempty"`
	BootMS   int64 `json:"boot_ms"`
	RunMS    int64 `json:"run_ms"`
	// From is the commit the guest was resumed from; Pager counts the
	// memory it paged in.
	From  string         `json:"from,omitempty"`
	Pager *vm.PagerStats `json:"pager,omitempty"`
	// SharedMemory counts the work of the shared memory backing of a
	// resume, in this process.
	SharedMemory *vm.SharedMemoryStats `json:"shared_memory,omitempty"`
	// Commit and Ref name the --capture commit, and CaptureStats count what it
	// wrote.
	Commit string `json:"commit,omitempty"`
	// Running is true when the command was still running at capture.
	Running      bool                `json:"running,omitempty"`
	Ref          string              `json:"ref,omitempty"`
	CaptureStats *guest.CaptureStats `json:"capture,omitempty"`
	// Image is the --image root file system. Its cached field is true
	// when the rootfs cache served it.
	Image *rootfs.Image `json:"image,omitempty"`
	// RootDiskImport records how the root disk image reached the store.
	RootDiskImport *disk.ImportResult `json:"root_disk_import,omitempty"`
}

func (c *RunCmd) Run(g *Globals) error {
	req, err := c.request()
	if err != nil {
		return withExitCode(ExitUsage, err)
	}
	opts, err := c.options(g)
	if err != nil {
		return withExitCode(ExitUsage, err)
	}
	if c.CaptureAfter > 0 && c.Capture == "" {
		return withExitCode(ExitUsage, errors.New("--capture-after needs --capture REF"))
	}
	kernelLog, closeLog, err := g.kernelLog()
	if err != nil {
		return withExitCode(ExitUsage, err)
	}
	defer closeLog()
	opts.KernelLog = kernelLog
	var captureRef string
	if c.Capture != "" {
		if captureRef, err = fullRefName(c.Capture); err != nil {
			return withExitCode(ExitUsage, err)
		}
	}
	if err := c.checkImageFlags(); err != nil {
		return withExitCode(ExitUsage, err)
	}
	if probe := vm.ProbeHost(); !probe.Usable {
		return withExitCode(ExitRunHostUnsupported, fmt.Errorf("this host cannot run arm64 guests: %s", probe.Reason))
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if c.Timeout > 0 {
		ctx, stop = context.WithTimeout(ctx, c.Timeout)
		defer stop()
	}

	var image *rootfs.Image
	if c.Image != "" {
		if image, err = c.applyImage(ctx, &opts, &req); err != nil {
			return withExitCode(ExitRunFailed, err)
		}
	}

	var store *objects.Store
	var refsDB *refs.Refs
	if c.From != "" || c.Capture != "" || opts.RootFS != "" {
		if store, refsDB, err = g.openStore(); err != nil {
			return withExitCode(ExitRunFailed, err)
		}
		defer store.Close()
	}
	if opts.RootFS != "" {
		opts.Store = store
	}

	start := time.Now()
	var gst *guest.Guest
	var from objects.ID
	if c.From != "" {
		if from, err = resolveRevision(store, refsDB, c.From); err != nil {
			if errors.Is(err, objects.ErrNotFound) {
				return withExitCode(ExitUsage, fmt.Errorf("--from %s: no such ref or commit; spore refs lists them", c.From))
			}
			return err
		}
		gst, err = guest.Resume(ctx, store, from, c.From, opts)
	} else {
		gst, err = guest.Boot(ctx, opts)
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return withExitCode(ExitRunTimeout, fmt.Errorf("timed out after %v while the guest booted", c.Timeout))
		}
		return withExitCode(ExitRunBootFailed, fmt.Errorf("guest failed to boot: %w", err))
	}
	booted := time.Now()
	slog.Debug("guest booted", "boot_ms", booted.Sub(start).Milliseconds())

	status, running, runErr := c.execute(ctx, gst, req)
	finished := time.Now()
	if errors.Is(runErr, errNoSavedSession) {
		gst.Kill()
		return withExitCode(ExitUsage, fmt.Errorf("no command given, and %s was captured with no command running: give a command", c.From))
	}

	summary := runSummary{
		ExitCode:       status.Code,
		Signal:         status.Signal,
		BootMS:         booted.Sub(start).Milliseconds(),
		RunMS:          finished.Sub(booted).Milliseconds(),
		Image:          image,
		RootDiskImport: gst.RootDiskImport(),
	}
	if c.From != "" {
		stats := gst.PagerStats()
		summary.From, summary.Pager = from.String(), &stats
		slog.Debug("lazy memory restore", "commit", from.String(), "faults", stats.Faults,
			"chunks_copied", stats.ChunksCopied, "chunks_zeroed", stats.ChunksZeroed,
			"bytes_read", stats.BytesRead, "handler_ms", stats.HandlerNanos/1e6)
		if shared, ok := gst.SharedMemoryStats(); ok {
			summary.SharedMemory = &shared
			slog.Debug("shared guest memory", "chunks_copied", shared.ChunksCopied, "chunks_found", shared.ChunksFound,
				"chunks_private", shared.ChunksPrivate, "resident_bytes", shared.ResidentBytes)
		}
	}
	var captureErr error
	captured := false
	if running != nil {
		summary.Commit, summary.CaptureStats, captureErr = c.capture(gst, store, refsDB, captureRef, running)
		summary.Ref, summary.Running = captureRef, true
		captured = true
	} else if runErr == nil && captureRef != "" {
		if status.Code != 0 {
			fmt.Fprintf(os.Stderr, "spore: not captured: the command exited with status %d\n", status.Code)
		} else {
			summary.Commit, summary.CaptureStats, captureErr = c.capture(gst, store, refsDB, captureRef, nil)
			summary.Ref = captureRef
			captured = true
		}
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A captured guest stays paused, so it is stopped rather than asked to
	// power off; its state lives on in the commit.
	if runErr != nil || captured {
		gst.Kill()
	} else if err := gst.Shutdown(shutdownCtx); err != nil {
		slog.Warn("guest shutdown failed", "err", err)
	}

	if runErr != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return withExitCode(ExitRunTimeout, fmt.Errorf("timed out after %v; the guest was stopped", c.Timeout))
		}
		return withExitCode(ExitRunFailed, runErr)
	}

	if g.JSON {
		writeJSON(os.Stderr, summary)
	}
	if captureErr != nil {
		return withExitCode(ExitRunFailed, fmt.Errorf("capture into %s: %w", captureRef, captureErr))
	}
	if status.Code != 0 {
		return withExitCode(status.Code, errSilent)
	}
	return nil
}

// request builds the agent request from the command and flags.
func (c *RunCmd) request() (agent.Request, error) {
	req := agent.Request{Env: c.Env, Dir: c.Workdir, TTY: c.TTY}
	for _, kv := range c.Env {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			return req, fmt.Errorf("invalid --env %q: use KEY=VALUE", kv)
		}
	}

	req.Argv, req.Shell = parseCommand(c.Command)
	if req.Argv == nil && req.Shell == "" && c.From == "" {
		// Without a command, a resume attaches to the command saved in the
		// commit, checked after resume; a boot has nothing to do.
		return req, errors.New("no command given: use spore run -- CMD [ARGS...] or spore run 'SHELL STRING'")
	}
	return req, nil
}

// parseCommand splits a command's passthrough arguments into an argv to
// run exactly (after --, or several words) or a shell string (one word).
// Both are empty when there is no command.
func parseCommand(command []string) (argv []string, shell string) {
	// kong keeps the "--" that ends the flags as the first passthrough
	// argument; it marks an argv to run exactly.
	exact := len(command) > 0 && command[0] == "--"
	if exact {
		command = command[1:]
	}
	switch {
	case len(command) == 0:
		return nil, ""
	case exact || len(command) > 1:
		return command, ""
	default:
		return nil, command[0]
	}
}

// options turns the flags into guest boot options.
func (c *RunCmd) options(g *Globals) (guest.Options, error) {
	if c.From != "" && (c.CPUs != nil || c.Memory != "") {
		return guest.Options{}, errors.New("--cpus and --memory cannot be combined with --from: a resumed guest keeps the vCPUs and RAM of its commit")
	}
	var memory uint64
	var err error
	if c.Memory != "" {
		if memory, err = parseSize(c.Memory); err != nil {
			return guest.Options{}, fmt.Errorf("invalid --memory %q: %w", c.Memory, err)
		}
	}
	vcpus := 0
	if c.CPUs != nil {
		if vcpus = *c.CPUs; vcpus < 1 {
			return guest.Options{}, fmt.Errorf("invalid --cpus %d: use 1 or more", vcpus)
		}
	}
	if c.RootFSWritable && c.RootFS == "" && c.From == "" {
		return guest.Options{}, errors.New("--rootfs-writable needs --rootfs FILE")
	}
	if c.From != "" && (c.RootFS != "" || c.RootFSWritable) {
		return guest.Options{}, errors.New("--rootfs and --rootfs-writable cannot be combined with --from: a resumed guest runs on the disk saved in its commit")
	}

	opts := guest.Options{
		MemoryBytes:    memory,
		VCPUs:          vcpus,
		RootFS:         c.RootFS,
		RootFSWritable: c.RootFSWritable,
		Logger:         slog.Default(),
	}
	if c.From != "" && c.ShareMemory {
		opts.ShareMemory, opts.SharedMemoryDir = true, sharedMemoryDir()
	}
	if c.Kernel != "" {
		if opts.Kernel, err = os.ReadFile(c.Kernel); err != nil {
			return opts, err
		}
	}
	if c.Initrd != "" {
		if opts.Initrd, err = os.ReadFile(c.Initrd); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// errNoSavedSession means there is no command to run or attach to.
var errNoSavedSession = errors.New("no saved session")

// execute runs the request, or attaches to the command saved in the
// resumed commit when the request is empty, with the local terminal in raw
// mode for -t, and forwards SIGINT and SIGTERM to the guest command. With
// --capture-after it returns the still running session when that time is
// up, for the caller to capture.
func (c *RunCmd) execute(ctx context.Context, gst *guest.Guest, req agent.Request) (agent.ExitStatus, *agent.Session, error) {
	var stdin io.Reader
	if c.Interactive {
		stdin = os.Stdin
	}

	if c.TTY {
		if rows, cols, ok := terminalSize(); ok {
			req.Rows, req.Cols = rows, cols
		}
		if term.IsTerminal(int(os.Stdin.Fd())) && c.Interactive {
			state, err := term.MakeRaw(int(os.Stdin.Fd()))
			if err != nil {
				return agent.ExitStatus{}, nil, fmt.Errorf("set the terminal to raw mode: %w", err)
			}
			defer term.Restore(int(os.Stdin.Fd()), state)
		}
	}

	session, err := c.startOrAttach(ctx, gst, req, stdin)
	if err != nil {
		return agent.ExitStatus{}, nil, err
	}

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGWINCH)
	defer signal.Stop(signals)
	go func() {
		for sig := range signals {
			if sig == syscall.SIGWINCH {
				if rows, cols, ok := terminalSize(); ok && c.TTY {
					session.Resize(rows, cols)
				}
				continue
			}
			session.Signal(sig.(syscall.Signal))
		}
	}()

	if c.CaptureAfter <= 0 {
		status, err := session.Wait(ctx)
		return status, nil, err
	}

	type result struct {
		status agent.ExitStatus
		err    error
	}
	finished := make(chan result, 1)
	go func() {
		status, err := session.Wait(ctx)
		finished <- result{status, err}
	}()
	select {
	case r := <-finished:
		return r.status, nil, r.err
	case <-time.After(c.CaptureAfter):
		return agent.ExitStatus{}, session, nil
	}
}

// startOrAttach starts the request, or attaches to the saved session of
// the resumed commit when the request has no command.
func (c *RunCmd) startOrAttach(ctx context.Context, gst *guest.Guest, req agent.Request, stdin io.Reader) (*agent.Session, error) {
	if req.Argv != nil || req.Shell != "" {
		return gst.Agent().Start(ctx, req, stdin, os.Stdout, os.Stderr)
	}
	saved := gst.SavedSession()
	if saved == nil {
		return nil, errNoSavedSession
	}
	return gst.Agent().Attach(ctx, agent.AttachRequest{
		Session:    saved.Session,
		StdoutFrom: saved.StdoutOffset,
		StderrFrom: saved.StderrOffset,
	}, stdin, os.Stdout, os.Stderr)
}

func terminalSize() (rows, cols uint16, ok bool) {
	for _, f := range []*os.File{os.Stdin, os.Stdout} {
		if w, h, err := term.GetSize(int(f.Fd())); err == nil {
			return uint16(h), uint16(w), true
		}
	}
	return 0, 0, false
}
