package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
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
	stdin   string
	env     []string
	timeout time.Duration
}

// runSpore runs the spore binary with args. On a hang past the time limit,
// SIGQUIT makes spore print every goroutine's stack into stderr.
func runSpore(t testing.TB, inv invocation, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), inv.timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, sporeBinary(t), args...)
	if inv.env != nil {
		cmd.Env = append(os.Environ(), inv.env...)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if inv.stdin != "" {
		cmd.Stdin = bytes.NewBufferString(inv.stdin)
	}
	err := cmd.Run()

	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	default:
		t.Fatalf("spore %q: %v\nstderr:\n%s", args, err, r.stderr)
	}
	return r
}
