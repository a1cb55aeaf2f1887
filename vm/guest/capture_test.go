package guest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spore-vm/spore/arch/arm64"
	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/vm"
)

// openTestStore opens a store in a temporary directory, served by this
// process.
func openTestStore(t testing.TB) (*objects.Store, *refs.Refs) {
	t.Helper()
	s, err := objects.Open(t.TempDir(), objects.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, refs.New(s.Backend())
}

// run runs a shell command in the guest and returns its stdout.
func run(t testing.TB, ctx context.Context, g *Guest, script string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	status, err := g.Exec(ctx, agent.Request{Argv: []string{"/bin/sh", "-c", script}}, nil, &stdout, &stderr)
	if err != nil || status.Code != 0 {
		t.Fatalf("%q: status %v, err %v, stderr %q", script, status, err, stderr.String())
	}
	return stdout.String()
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// timerInterrupts sums the arch timer's interrupt counts over all CPUs.
func timerInterrupts(t *testing.T, ctx context.Context, g *Guest) int {
	t.Helper()
	out := run(t, ctx, g, `grep arch_timer /proc/interrupts`)
	total := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		for _, f := range fields[1:] {
			n, err := strconv.Atoi(f)
			if err != nil {
				break
			}
			total += n
		}
	}
	return total
}

// savedCounters returns the virtual counter that each vCPU's saved state
// in commit id holds, and the counter frequency of the commit's platform.
func savedCounters(t *testing.T, store *objects.Store, id objects.ID) ([]uint64, uint64) {
	t.Helper()
	commit, err := store.GetCommit(id)
	if err != nil {
		t.Fatal(err)
	}
	hz, err := strconv.ParseUint(commit.Platform["timer_hz"], 10, 64)
	if err != nil || hz == 0 {
		t.Fatalf("commit %s: invalid timer_hz %q", id, commit.Platform["timer_hz"])
	}
	tree, err := store.GetTree(commit.Tree)
	if err != nil {
		t.Fatal(err)
	}
	snap, _, _, err := loadState(store, tree)
	if err != nil {
		t.Fatal(err)
	}
	var counters []uint64
	for _, cpu := range snap.CPUs {
		for _, r := range cpu.Registers {
			if r.ID == arm64.RegTimerCNT {
				counters = append(counters, binary.LittleEndian.Uint64(r.Value))
			}
		}
	}
	if len(counters) != len(snap.CPUs) {
		t.Fatalf("commit %s: %d vCPU states hold %d virtual counters", id, len(snap.CPUs), len(counters))
	}
	return counters, hz
}

// counterSeconds converts counter values to seconds, for logs.
func counterSeconds(counters []uint64, hz uint64) []string {
	var out []string
	for _, c := range counters {
		out = append(out, strconv.FormatFloat(float64(c)/float64(hz), 'f', 3, 64))
	}
	return out
}

// maxResumeSeconds bounds the guest time from the saved counter to the
// first check after Resume returns, in the emulated testbed.
const maxResumeSeconds = 120

// checkRestoredCounters checks that every vCPU of a resumed guest counts on
// from the latest counter saved in its commit: not below it, which would
// run the guest's clocks backwards, and not far above it.
func checkRestoredCounters(t *testing.T, g *Guest, gen int, saved []uint64, hz uint64) {
	t.Helper()
	states, err := g.machine.DebugState(time.Minute)
	if err != nil {
		t.Fatalf("generation %d: %v", gen, err)
	}
	latest := slices.Max(saved)
	var now []uint64
	for _, s := range states {
		now = append(now, s.TimerCNT)
		if s.TimerCNT < latest || s.TimerCNT-latest > maxResumeSeconds*hz {
			t.Errorf("generation %d: vcpu %d counts from %.3f s after a resume from %.3f s", gen, s.Index, float64(s.TimerCNT)/float64(hz), float64(latest)/float64(hz))
		}
	}
	t.Logf("generation %d: virtual counters after the resume: %v s", gen, counterSeconds(now, hz))
}

// checkCPUClocks writes markers to the kernel log from vCPU 0, 1, 0 and 1
// in turn and checks that their printk timestamps, which each vCPU takes
// from its own virtual counter, never go back. A resume that restored the
// vCPUs' counters with different offsets would show here as a step back
// as large as the difference.
func checkCPUClocks(t *testing.T, ctx context.Context, g *Guest, gen int) {
	t.Helper()
	out := run(t, ctx, g, `for c in 0 1 0 1; do taskset -c $c sh -c "echo spore-clock-$c > /dev/kmsg"; done; dmesg | grep spore-clock-`)
	if err := checkLogTimestamps(out); err != nil {
		t.Errorf("generation %d: vCPU clocks differ: %v", gen, err)
	}
}

// checkLogTimestamps returns an error if a kernel log line of out, in the
// form "[   12.345678] text", has an earlier timestamp than the line before.
func checkLogTimestamps(out string) error {
	var last float64
	var lastLine string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		open, end := strings.IndexByte(line, '['), strings.IndexByte(line, ']')
		if open < 0 || end < open {
			return fmt.Errorf("kernel log line %q has no timestamp", line)
		}
		stamp, err := strconv.ParseFloat(strings.TrimSpace(line[open+1:end]), 64)
		if err != nil {
			return fmt.Errorf("kernel log line %q: %w", line, err)
		}
		if stamp < last {
			return fmt.Errorf("%q is %.3f s before %q", line, last-stamp, lastLine)
		}
		last, lastLine = stamp, line
	}
	return nil
}

func TestCheckLogTimestampsFindsStepBack(t *testing.T) {
	inOrder := "[   10.000100] spore-clock-0\n[   10.040000] spore-clock-1\n"
	if err := checkLogTimestamps(inOrder); err != nil {
		t.Errorf("timestamps in order: %v", err)
	}
	skewed := inOrder + "[   40.100000] spore-clock-0\n[   10.120000] spore-clock-1\n"
	if err := checkLogTimestamps(skewed); err == nil || !strings.Contains(err.Error(), "29.980 s before") {
		t.Errorf("timestamps 30 s apart between vCPUs: error %v, expected one naming the step", err)
	}
}

// TestCaptureResumeGenerations captures a booted guest with a background
// counter and a tmpfs file, then resumes and captures again for five
// generations. Each generation must keep the counter running from where it
// was, keep the file, see timer interrupts rise, wake a sleeper on time,
// page in only part of RAM, and store only chunks with dirty pages. Every
// vCPU must count on from the counter saved in the commit, and the vCPUs'
// kernel clocks must agree.
func TestCaptureResumeGenerations(t *testing.T) {
	g := bootTestGuest(t, Options{VCPUs: 2, MemoryBytes: 256 << 20})
	store, refsDB := openTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// The counter renames its file into place, so a reader never sees it empty.
	run(t, ctx, g, `echo kept > /tmp/note; (i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done) >/dev/null 2>&1 &`)
	time.Sleep(time.Second)
	count := atoi(t, run(t, ctx, g, "cat /tmp/count"))

	id, stats, err := g.Capture(CaptureOptions{Store: store, Refs: refsDB, Ref: "refs/heads/gen0", Message: "generation 0"})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Incremental {
		t.Error("first capture claims to be incremental")
	}
	g.Kill()

	for gen := 1; gen <= 5; gen++ {
		saved, hz := savedCounters(t, store, id)
		t.Logf("generation %d: virtual counters saved in the commit: %v s", gen, counterSeconds(saved, hz))
		console := &syncBuffer{}
		resumed, err := Resume(ctx, store, id, "gen"+strconv.Itoa(gen-1), Options{KernelLog: console})
		if err != nil {
			t.Fatalf("generation %d: resume: %v\nconsole:\n%s", gen, err, console.String())
		}
		checkRestoredCounters(t, resumed, gen, saved, hz)

		now := atoi(t, run(t, ctx, resumed, "cat /tmp/count"))
		if now < count {
			t.Errorf("generation %d: counter went back from %d to %d", gen, count, now)
		}
		if note := run(t, ctx, resumed, "cat /tmp/note"); note != "kept\n" {
			t.Errorf("generation %d: tmpfs file reads %q, want %q", gen, note, "kept\n")
		}

		checkCPUClocks(t, ctx, resumed, gen)
		timerBefore := timerInterrupts(t, ctx, resumed)
		sleep := run(t, ctx, resumed, `a=$(cut -d' ' -f1 /proc/uptime); sleep 1; b=$(cut -d' ' -f1 /proc/uptime); echo "$a $b"`)
		fields := strings.Fields(sleep)
		a, _ := strconv.ParseFloat(fields[0], 64)
		b, _ := strconv.ParseFloat(fields[1], 64)
		if slept := b - a; slept < 1 || slept > 30 {
			t.Errorf("generation %d: sleep 1 took %.2f s of guest time", gen, slept)
		}
		if after := timerInterrupts(t, ctx, resumed); after <= timerBefore {
			t.Errorf("generation %d: timer interrupts stuck at %d", gen, after)
		}
		count = atoi(t, run(t, ctx, resumed, "cat /tmp/count"))
		if count <= now {
			t.Errorf("generation %d: counter stopped at %d", gen, count)
		}

		paged := resumed.PagerStats()
		ramChunks := uint64(256<<20) / uint64(objects.DefaultChunkSize)
		if paged.ChunksCopied+paged.ChunksZeroed >= ramChunks {
			t.Errorf("generation %d: resume paged in all %d chunks of RAM", gen, ramChunks)
		}

		next, stats, err := resumed.Capture(CaptureOptions{Store: store, Refs: refsDB, Ref: "refs/heads/gen" + strconv.Itoa(gen), Message: "generation " + strconv.Itoa(gen)})
		if err != nil {
			t.Fatalf("generation %d: capture: %v", gen, err)
		}
		if !stats.Incremental {
			t.Errorf("generation %d: capture after a resume was not incremental", gen)
		}
		// Only chunks with dirty pages are written: at most their size
		// (compression makes it smaller), plus the index nodes above them.
		if limit := int64(stats.DirtyChunkBytes)*12/10 + 64<<10; stats.Memory.BytesWritten > limit {
			t.Errorf("generation %d: wrote %d bytes of memory for %d bytes of dirty chunks", gen, stats.Memory.BytesWritten, stats.DirtyChunkBytes)
		}
		t.Logf("generation %d: paged in %d of %d chunks (%d faults), %d dirty pages in %d KiB of chunks, wrote %d KiB",
			gen, paged.ChunksCopied+paged.ChunksZeroed, ramChunks, paged.Faults, stats.DirtyPages, stats.DirtyChunkBytes>>10, stats.Memory.BytesWritten>>10)

		commit, err := store.GetCommit(next)
		if err != nil {
			t.Fatal(err)
		}
		if len(commit.Parents) != 1 || commit.Parents[0] != id {
			t.Errorf("generation %d: commit parents %v, want [%s]", gen, commit.Parents, id)
		}
		resumed.Kill()
		id = next
	}
}

// TestResumeChecksPlatformAndClock resumes a commit whose platform contract
// names another CPU, which must fail naming the field, and then the real
// commit, whose guest clock must be set from the host.
func TestResumeChecksPlatformAndClock(t *testing.T) {
	g := bootTestGuest(t, Options{})
	store, refsDB := openTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	id, _, err := g.Capture(CaptureOptions{Store: store, Refs: refsDB, Ref: "refs/heads/base"})
	if err != nil {
		t.Fatal(err)
	}
	g.Kill()

	commit, err := store.GetCommit(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"arch", "board_version", "timer_hz", "vcpu.id_aa64pfr0_el1", "ram_bytes"} {
		if v := commit.Platform[field]; v == "" || v == "0" {
			t.Errorf("platform contract field %s is %q", field, v)
		}
	}
	foreign := *commit
	foreign.Platform = map[string]string{}
	for k, v := range commit.Platform {
		foreign.Platform[k] = v
	}
	foreign.Platform["vcpu.midr_el1"] = "0x410fd0c0"
	foreignID, err := store.PutCommit(&foreign)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resume(ctx, store, foreignID, "foreign", Options{})
	var platformErr *vm.PlatformError
	if !errors.As(err, &platformErr) || platformErr.Field != "vcpu.midr_el1" {
		t.Fatalf("resume of a commit from another CPU: %v, want a platform error naming vcpu.midr_el1", err)
	}

	resumed, err := Resume(ctx, store, id, "base", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Kill()
	guestTime := atoi(t, run(t, ctx, resumed, "date +%s"))
	if skew := time.Now().Unix() - int64(guestTime); skew < -60 || skew > 60 {
		t.Errorf("guest clock is %d s off the host after resume", skew)
	}
}
