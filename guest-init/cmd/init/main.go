// Command init is PID 1 of a spore guest. It is built for the guest
// architecture (CGO_ENABLED=0 GOARCH=arm64), packed into an initramfs by
// guest-init/cmd/mkinitrd, and started by the kernel as /init.
//
// It mounts the early file systems, brings up lo, optionally switches into
// a root disk (spore.root=), and serves the exec agent on the
// virtio-console port named org.spore.agent, or runs one command
// (spore.run=) and powers off. Every line it logs starts with
// "spore-init: ". A fatal error is logged and powers the guest off.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime/debug"
	"time"

	guestinit "github.com/spore-vm/spore/guest-init"
	"github.com/spore-vm/spore/guest-init/agent"
	"golang.org/x/sys/unix"
)

// version is set with -ldflags "-X main.version=..."; otherwise the VCS
// revision from the build info is used.
var version = ""

const (
	sysroot  = "/sysroot"
	rootWait = 10 * time.Second
	portWait = 10 * time.Second
	runDir   = "/run/spore"
	hookDir  = "/etc/spore/hooks.d"
)

func main() {
	logger := guestinit.NewLogger(guestinit.OpenConsole())
	if os.Getpid() != 1 {
		logger.Printf("must run as PID 1 (the guest's /init), running as PID %d", os.Getpid())
		os.Exit(2)
	}
	defer func() {
		if r := recover(); r != nil {
			fatal(logger, fmt.Errorf("panic: %v\n%s", r, debug.Stack()))
		}
	}()
	if err := run(logger); err != nil {
		fatal(logger, err)
	}
	fatal(logger, fmt.Errorf("init returned without powering off"))
}

// fatal logs err, powers off and never returns: PID 1 must not exit,
// because the kernel panics when it does.
func fatal(logger *log.Logger, err error) {
	logger.Printf("fatal: %v; powering off", err)
	poweroff(logger)
}

func poweroff(logger *log.Logger) {
	if err := guestinit.Poweroff(); err != nil {
		logger.Printf("power off failed: %v; halting here", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

func run(logger *log.Logger) error {
	// Early file systems.
	if err := guestinit.MountAll(guestinit.EarlyMounts("/")); err != nil {
		return err
	}
	logger.SetOutput(guestinit.OpenConsole())
	logger.Printf("starting (version %s)", agentVersion())

	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read kernel command line: %w", err)
	}
	cfg, err := guestinit.ParseCmdline(string(raw))
	if err != nil {
		return err
	}

	// Loopback: sessions expect 127.0.0.1 to work; a failure is logged
	// but does not stop the guest.
	if err := guestinit.LinkUp("lo"); err != nil {
		logger.Printf("loopback: %v", err)
	}

	// Root disk.
	if cfg.Root != "" {
		if err := switchToRootDisk(logger, cfg); err != nil {
			return err
		}
	}

	// PID 1 reaps every orphan the kernel hands to it.
	reaper := agent.NewReaper(true, func(pid int, ws unix.WaitStatus) {
		logger.Printf("reaped orphan process %d (status %#x)", pid, uint32(ws))
	})

	if cfg.Run != "" {
		return runOnce(logger, reaper, cfg.Run)
	}
	return serveAgent(logger, reaper, cfg)
}

func switchToRootDisk(logger *log.Logger, cfg guestinit.Config) error {
	deadline := time.Now().Add(rootWait)
	for {
		if _, err := os.Stat(cfg.Root); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("root disk %s did not appear within %v; check spore.root and that the VMM attached the disk", cfg.Root, rootWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := guestinit.MountRoot(cfg.Root, cfg.RootFSType, sysroot, cfg.RootReadOnly); err != nil {
		return err
	}
	keep := []string{"/dev", "/proc", "/sys", "/run", "/tmp"}
	if err := guestinit.SwitchRoot(sysroot, keep); err != nil {
		return err
	}
	logger.Printf("switched root to %s (%s, read-only %v)", cfg.Root, cfg.RootFSType, cfg.RootReadOnly)
	return nil
}

// runOnce runs command with the console as its terminal and powers off.
func runOnce(logger *log.Logger, reaper *agent.Reaper, command string) error {
	console, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console for spore.run: %w", err)
	}
	cmd := newShellCmd(command)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = console, console, console
	logger.Printf("spore.run: starting %q", command)
	done, err := reaper.Start(cmd)
	if err != nil {
		return fmt.Errorf("spore.run: start /bin/sh: %w", err)
	}
	ws := <-done
	if ws.Signaled() {
		logger.Printf("spore.run: killed by signal %d (exit code %d)", ws.Signal(), 128+int(ws.Signal()))
	} else {
		logger.Printf("spore.run: exit code %d", ws.ExitStatus())
	}
	poweroff(logger)
	return nil
}

func serveAgent(logger *log.Logger, reaper *agent.Reaper, cfg guestinit.Config) error {
	path, err := guestinit.WaitPort(guestinit.VirtioPortsDir, cfg.Port, portWait)
	if err != nil {
		return err
	}
	port, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open agent port %s: %w", path, err)
	}

	identity := &guestinit.Identity{
		RunDir:  runDir,
		HookDir: hookDir,
		Start:   reaper.StartWait,
		Log:     logger.Printf,
	}
	// A booted guest is generation 0 until the host applies an identity.
	if err := identity.WriteFiles(agent.UnforkedIdentity()); err != nil {
		logger.Printf("failed to write the identity files of the booted guest: %v", err)
	}
	srv := agent.NewServer(agent.ServerConfig{
		AgentVersion:  agentVersion(),
		Reaper:        reaper,
		ApplyIdentity: identity.Apply,
		Poweroff: func() {
			logger.Printf("poweroff requested by the host")
			poweroff(logger)
		},
		Freeze: func(ctx context.Context, thaw bool) error {
			logger.Printf("root file system: freeze requested by the host (thaw %v)", thaw)
			return guestinit.FreezeRoot(ctx, thaw)
		},
		Logger: logger,
	})
	logger.Printf("serving the agent on %s (%s)", path, cfg.Port)
	err = srv.Serve(context.Background(), &guestinit.PortReader{R: port}, port)
	return fmt.Errorf("agent port %s: %w", path, err)
}

func agentVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "devel"
}

func newShellCmd(command string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", "-lc", command)
	cmd.Env = []string{"PATH=" + agent.DefaultPath, "HOME=/root", "TERM=linux"}
	cmd.Dir = "/"
	return cmd
}
