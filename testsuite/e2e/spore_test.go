package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spore-vm/spore/vm"
)

// sporeEnv names the spore binary under test, built for the guest
// architecture by make e2e.
const sporeEnv = "SPORE_TEST_SPORE"

// sporeBinary returns the spore binary to test, skipping on hosts that
// cannot run arm64 guests, except in the testbed.
func sporeBinary(t testing.TB) string {
	t.Helper()
	if os.Getenv("SPORE_IN_TESTBED") == "" {
		if p := vm.ProbeHost(); !p.Usable {
			t.Skipf("this host cannot run arm64 guests: %s", p.Reason)
		}
	}
	path := os.Getenv(sporeEnv)
	if path == "" {
		t.Fatalf("%s is not set: run these tests with make e2e", sporeEnv)
	}
	return path
}

// result is the outcome of one spore invocation.
type result struct {
	stdout, stderr string
	code           int
}

// spore runs the spore binary with args and stdin, with a time limit that
// covers a boot in the emulated testbed, or a fan-out of 8 children there.
func spore(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return runSpore(t, invocation{stdin: stdin, timeout: 10 * time.Minute}, args...)
}

// invocation is how runSpore starts spore: stdin, extra environment
// variables and a time limit.
type invocation struct {
	stdin string
	// stdinReader, when not nil, is spore's stdin in place of stdin, for
	// input that the test writes while spore runs.
	stdinReader io.Reader
	env         []string
	timeout     time.Duration
}

// runSpore runs the spore binary with args and waits for it.
func runSpore(t testing.TB, inv invocation, args ...string) result {
	t.Helper()
	return startSpore(t, inv, args...).wait(t)
}

// sporeProcess is a spore process that startSpore started.
type sporeProcess struct {
	cmd    *exec.Cmd
	args   []string
	cancel context.CancelFunc
	stdout lockedBuffer
	stderr lockedBuffer
	// done is closed when spore exited, and err is then Wait's error.
	done chan struct{}
	err  error
}

// startSpore starts the spore binary with args. On a hang past the time
// limit, SIGQUIT makes spore print every goroutine's stack into stderr.
func startSpore(t testing.TB, inv invocation, args ...string) *sporeProcess {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), inv.timeout)
	p := &sporeProcess{args: args, cancel: cancel, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, sporeBinary(t), args...)
	console := filepath.Join(t.TempDir(), "console.log")
	p.cmd.Env = append(os.Environ(), "SPORE_CONSOLE_LOG="+console)
	p.cmd.Env = append(p.cmd.Env, inv.env...)
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGQUIT) }
	p.cmd.WaitDelay = 10 * time.Second
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	switch {
	case inv.stdinReader != nil:
		p.cmd.Stdin = inv.stdinReader
	case inv.stdin != "":
		p.cmd.Stdin = bytes.NewBufferString(inv.stdin)
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("spore %q: %v", args, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	// A test that failed before wait leaves spore running: give it two
	// minutes to end on its own, then stop it as the time limit does.
	t.Cleanup(func() {
		timer := time.AfterFunc(2*time.Minute, cancel)
		defer timer.Stop()
		<-p.done
		cancel()
		if t.Failed() {
			logConsoleTail(t, args, console)
		}
	})
	return p
}

// consoleTailLines is how much of a guest console a failed test shows.
const consoleTailLines = 60

// logConsoleTail shows the end of the console log of one spore
// invocation, so that a guest that crashed or stopped responding in a
// failed test leaves its kernel messages in the test output.
func logConsoleTail(t testing.TB, args []string, path string) {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > consoleTailLines {
		lines = lines[len(lines)-consoleTailLines:]
	}
	t.Logf("guest console of spore %q, last %d lines:\n%s", args, len(lines), strings.Join(lines, "\n"))
}

// exited reports whether spore has exited.
func (p *sporeProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// pid returns the process ID of spore.
func (p *sporeProcess) pid() int { return p.cmd.Process.Pid }

// wait waits until spore exits and returns its outcome.
func (p *sporeProcess) wait(t testing.TB) result {
	t.Helper()
	defer p.cancel()
	<-p.done
	err := p.err

	r := result{stdout: p.stdout.String(), stderr: p.stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	default:
		t.Fatalf("spore %q: %v\nstderr:\n%s", p.args, err, r.stderr)
	}
	return r
}

// lockedBuffer is a bytes.Buffer that a test may read while a process
// writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
