package guest

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/vm"
)

// bootTestGuest boots one guest for a whole test, skipping on hosts that
// cannot run arm64 guests, except in the testbed.
func bootTestGuest(t testing.TB, opts Options) *Guest {
	t.Helper()
	if os.Getenv("SPORE_IN_TESTBED") == "" {
		if p := vm.ProbeHost(); !p.Usable {
			t.Skipf("this host cannot run arm64 guests: %s", p.Reason)
		}
	}
	console := &syncBuffer{}
	opts.KernelLog = console

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g, err := Boot(ctx, opts)
	if err != nil {
		t.Fatalf("boot: %v\nconsole:\n%s", err, console.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return g
}

func TestExecStreamsAndStatus(t *testing.T) {
	g := bootTestGuest(t, Options{VCPUs: 2, MemoryBytes: 256 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var stdout, stderr bytes.Buffer
	status, err := g.Exec(ctx, agent.Request{Argv: []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if status.Code != 3 {
		t.Errorf("exit status %v, want 3", status)
	}
	if stdout.String() != "out\n" {
		t.Errorf("stdout %q, want %q", stdout.String(), "out\n")
	}
	if stderr.String() != "err\n" {
		t.Errorf("stderr %q, want %q", stderr.String(), "err\n")
	}

	stdout.Reset()
	status, err = g.Exec(ctx, agent.Request{Argv: []string{"/bin/nproc"}}, nil, &stdout, nil)
	if err != nil || status.Code != 0 {
		t.Fatalf("nproc: status %v, err %v", status, err)
	}
	if strings.TrimSpace(stdout.String()) != "2" {
		t.Errorf("nproc printed %q, want 2", stdout.String())
	}
}

func TestBootedGuestIsGenerationZero(t *testing.T) {
	g := bootTestGuest(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	env := run(t, ctx, g, "cat /run/spore/env")
	if env != "SPORE_GENERATION_ID=0\nSPORE_GENERATION=0\n" {
		t.Errorf("/run/spore/env of a booted guest = %q, expected generation 0", env)
	}
	generation := run(t, ctx, g, "cat /run/spore/generation.json")
	if !strings.Contains(generation, `"generation": "0"`) {
		t.Errorf("/run/spore/generation.json of a booted guest = %q, expected generation 0", generation)
	}
}

func TestDebugStateReadsVCPUs(t *testing.T) {
	g := bootTestGuest(t, Options{VCPUs: 2})

	first, err := g.machine.DebugState(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	second, err := g.machine.DebugState(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || len(second) != 2 {
		t.Fatalf("DebugState returned %d and %d vCPUs, expected 2", len(first), len(second))
	}
	for i := range first {
		if first[i].PC == 0 {
			t.Errorf("vcpu %d: pc is 0", i)
		}
		if second[i].TimerCNT <= first[i].TimerCNT {
			t.Errorf("vcpu %d: virtual counter went from %#x to %#x in 100 ms", i, first[i].TimerCNT, second[i].TimerCNT)
		}
	}
	if line := first[1].String(); !strings.Contains(line, "vcpu 1: mp_state 0 pc 0x") {
		t.Errorf("state of vcpu 1 reads %q", line)
	}

	// The guest runs on after the report.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out := run(t, ctx, g, "echo alive"); out != "alive\n" {
		t.Errorf("after DebugState the guest printed %q", out)
	}
}

func TestExecForwardsStdin(t *testing.T) {
	g := bootTestGuest(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var stdout bytes.Buffer
	status, err := g.Exec(ctx, agent.Request{Argv: []string{"/bin/cat"}}, strings.NewReader("hello\n"), &stdout, nil)
	if err != nil || status.Code != 0 {
		t.Fatalf("cat with stdin: status %v, err %v", status, err)
	}
	if stdout.String() != "hello\n" {
		t.Errorf("cat echoed %q, want %q", stdout.String(), "hello\n")
	}

	// Without stdin the command sees EOF at once instead of waiting.
	stdout.Reset()
	status, err = g.Exec(ctx, agent.Request{Argv: []string{"/bin/cat"}}, nil, &stdout, nil)
	if err != nil || status.Code != 0 || stdout.Len() != 0 {
		t.Errorf("cat without stdin: status %v, err %v, output %q; want 0, nil and no output", status, err, stdout.String())
	}
}

// syncBuffer collects console output written from vCPU threads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSnapshotRestoreInProcess snapshots a guest with a background counter
// and a file in tmpfs, drops it, restores the snapshot into a new VM and
// checks that the counter runs on from where it was and the file is there.
func TestSnapshotRestoreInProcess(t *testing.T) {
	g := bootTestGuest(t, Options{VCPUs: 2, MemoryBytes: 256 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The counter renames its file into place, so a reader never sees it empty.
	start := `echo before > /tmp/note; (i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done) >/dev/null 2>&1 &`
	if status, err := g.Exec(ctx, agent.Request{Argv: []string{"/bin/sh", "-c", start}}, nil, nil, nil); err != nil || status.Code != 0 {
		t.Fatalf("start counter: status %v, err %v", status, err)
	}
	readCount := func(g *Guest) int {
		t.Helper()
		var out bytes.Buffer
		status, err := g.Exec(ctx, agent.Request{Argv: []string{"/bin/cat", "/tmp/count"}}, nil, &out, nil)
		if err != nil || status.Code != 0 {
			t.Fatalf("read counter: status %v, err %v", status, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("counter file holds %q", out.String())
		}
		return n
	}
	time.Sleep(2 * time.Second)
	before := readCount(g)

	snap, err := g.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Kill(); err != nil {
		t.Logf("kill the original guest: %v", err)
	}

	console := &syncBuffer{}
	restored, err := Restore(ctx, snap, Options{KernelLog: console})
	if err != nil {
		t.Fatalf("restore: %v\nconsole:\n%s", err, console.String())
	}
	defer restored.Shutdown(context.Background())

	first := readCount(restored)
	if first < before {
		t.Errorf("counter went back from %d to %d across the restore", before, first)
	}
	time.Sleep(2 * time.Second)
	if later := readCount(restored); later <= first {
		t.Errorf("counter stopped after the restore: %d, then %d", first, later)
	}

	var note bytes.Buffer
	if status, err := restored.Exec(ctx, agent.Request{Argv: []string{"/bin/cat", "/tmp/note"}}, nil, &note, nil); err != nil || status.Code != 0 || note.String() != "before\n" {
		t.Errorf("tmpfs file after restore: %q (status %v, err %v), want %q", note.String(), status, err, "before\n")
	}
}
