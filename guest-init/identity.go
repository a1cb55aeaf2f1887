package guestinit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spore-vm/spore/guest-init/agent"
)

// Identity applies fork identities (agent.SetIdentity requests). The
// fields that touch the kernel are functions, so a test can replace them
// and run the file and hook steps unprivileged.
type Identity struct {
	RunDir  string // /run/spore: generation.json and env are written here
	HookDir string // /etc/spore/hooks.d: executables run in name order

	// HookTimeout bounds each hook. Zero means 30 seconds.
	HookTimeout time.Duration

	Reseed      func(seed []byte) error // default ReseedRNG
	SetClock    func(t time.Time) error // default SetClock
	SetHostname func(name string) error // default SetHostname

	// Start starts a hook and returns a function that waits for it and
	// returns its exit error. Nil uses exec.Cmd.Start and Wait. PID 1
	// passes Reaper.StartWait, because its Reaper collects every child.
	Start func(cmd *exec.Cmd) (wait func() error, err error)

	// Log receives one line per step. Nil discards.
	Log func(format string, args ...any)
}

// Generation is the content of generation.json.
type Generation struct {
	Generation string `json:"generation"`
	Hostname   string `json:"hostname,omitempty"`
	AppliedAt  string `json:"applied_at"` // RFC 3339, guest clock after it was set
	// Env holds the identity's environment entries, such as
	// SPORE_CHILD_INDEX, by name.
	Env map[string]string `json:"env,omitempty"`
}

// Apply runs the steps of a fork identity in order: reseed the RNG, set
// the wall clock and hostname, write RunDir/generation.json and RunDir/env,
// then run the hooks. It stops at the first failure and names the step.
func (id *Identity) Apply(ctx context.Context, m *agent.SetIdentity) error {
	if err := m.Validate(); err != nil {
		return err
	}
	logf := id.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	reseed, setClock, setHostname := id.Reseed, id.SetClock, id.SetHostname
	if reseed == nil {
		reseed = ReseedRNG
	}
	if setClock == nil {
		setClock = SetClock
	}
	if setHostname == nil {
		setHostname = SetHostname
	}

	// Entropy first, so that hooks and later sessions never see random
	// numbers that another child of the same commit also saw.
	if len(m.Entropy) > 0 {
		if err := reseed(m.Entropy); err != nil {
			return fmt.Errorf("reseed RNG: %w", err)
		}
	}
	if m.TimeUnixNs != 0 {
		if err := setClock(time.Unix(0, m.TimeUnixNs)); err != nil {
			return fmt.Errorf("set clock: %w", err)
		}
	}
	if m.Hostname != "" {
		if err := setHostname(m.Hostname); err != nil {
			return fmt.Errorf("set hostname %q: %w", m.Hostname, err)
		}
	}
	if err := id.WriteFiles(m); err != nil {
		return err
	}
	return id.runHooks(ctx, m, logf)
}

// WriteFiles writes RunDir/generation.json and RunDir/env for m. Init
// also calls it at boot, so a booted guest has the files of generation 0.
// A snapshot then already holds the files and the code paths that write
// them, so a resume writes fewer of the pages its siblings share.
func (id *Identity) WriteFiles(m *agent.SetIdentity) error {
	if err := os.MkdirAll(id.RunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", id.RunDir, err)
	}
	envMap := map[string]string{}
	for _, kv := range m.Env {
		k, v, _ := strings.Cut(kv, "=")
		envMap[k] = v
	}
	gen, _ := json.MarshalIndent(Generation{
		Generation: m.Generation,
		Hostname:   m.Hostname,
		AppliedAt:  time.Now().UTC().Format(time.RFC3339Nano),
		Env:        envMap,
	}, "", "  ")
	if err := writeFileAtomic(filepath.Join(id.RunDir, "generation.json"), append(gen, '\n')); err != nil {
		return err
	}
	var env strings.Builder
	fmt.Fprintf(&env, "SPORE_GENERATION_ID=%s\n", m.Generation)
	for _, kv := range m.Env {
		env.WriteString(kv)
		env.WriteByte('\n')
	}
	return writeFileAtomic(filepath.Join(id.RunDir, "env"), []byte(env.String()))
}

// writeFileAtomic writes through a temporary file and a rename, so a hook
// or session never reads a half-written file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return nil
}

// Hooks lists the executable regular files of dir in name order. A
// missing dir has no hooks.
func Hooks(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", err)
	}
	var hooks []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			continue
		}
		hooks = append(hooks, filepath.Join(dir, e.Name()))
	}
	sort.Strings(hooks)
	return hooks, nil
}

func (id *Identity) runHooks(ctx context.Context, m *agent.SetIdentity, logf func(string, ...any)) error {
	hooks, err := Hooks(id.HookDir)
	if err != nil {
		return err
	}
	timeout := id.HookTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	startHook := id.Start
	if startHook == nil {
		startHook = func(cmd *exec.Cmd) (func() error, error) { return cmd.Wait, cmd.Start() }
	}
	env := append([]string{"PATH=" + agent.DefaultPath, "SPORE_GENERATION_ID=" + m.Generation,
		"SPORE_RUN_DIR=" + id.RunDir}, m.Env...)
	for _, h := range hooks {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("hook %s not run: %w", h, err)
		}
		cmd := exec.Command(h)
		cmd.Env = env
		cmd.Dir = "/"
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

		// A hook that runs too long is killed with its process group. The
		// timer is not exec.CommandContext, because under PID 1 the
		// Reaper, not cmd.Wait, collects the process.
		start := time.Now()
		wait, err := startHook(cmd)
		if err != nil {
			return fmt.Errorf("hook %s: start: %w", h, err)
		}
		pgid := cmd.Process.Pid
		var timedOut atomic.Bool
		timer := time.AfterFunc(timeout, func() {
			timedOut.Store(true)
			syscall.Kill(-pgid, syscall.SIGKILL)
		})
		err = wait()
		timer.Stop()
		if timedOut.Load() {
			return fmt.Errorf("hook %s timed out after %v and was killed", h, timeout)
		}
		if err != nil {
			return fmt.Errorf("hook %s failed: %w", h, err)
		}
		logf("identity %s: hook %s done in %v", m.Generation, h, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
