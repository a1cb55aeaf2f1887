package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// runSummary is the part of spore run's --json summary these tests read.
type runSummary struct {
	ExitCode int    `json:"exit_code"`
	From     string `json:"from"`
	Commit   string `json:"commit"`
	Pager    *struct {
		Faults       uint64 `json:"faults"`
		ChunksCopied uint64 `json:"chunks_copied"`
		ChunksZeroed uint64 `json:"chunks_zeroed"`
	} `json:"pager"`
	Capture *struct {
		Incremental     bool   `json:"incremental"`
		DirtyPages      uint64 `json:"dirty_pages"`
		DirtyChunkBytes uint64 `json:"dirty_chunk_bytes"`
		Memory          struct {
			BytesWritten int64 `json:"bytes_written"`
		} `json:"memory"`
	} `json:"capture"`
}

// parseSummary finds the JSON summary that spore run --json prints on
// stderr after any message lines.
func parseSummary(t *testing.T, stderr string) runSummary {
	t.Helper()
	start := strings.Index(stderr, "{\n")
	if start < 0 {
		t.Fatalf("no JSON summary on stderr:\n%s", stderr)
	}
	var s runSummary
	if err := json.Unmarshal([]byte(stderr[start:]), &s); err != nil {
		t.Fatalf("decode summary: %v\n%s", err, stderr[start:])
	}
	return s
}

// TestCaptureThenResume warms a guest (a file in tmpfs and a background
// counter), captures it, resumes the commit in a new spore process, and
// captures the resumed guest again as a child commit.
func TestCaptureThenResume(t *testing.T) {
	sporeBinary(t)
	store := t.TempDir()

	// The counter renames its file into place, so a reader never sees it empty.
	warm := `echo warm > /tmp/warm; (i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done) >/dev/null 2>&1 & sleep 1`
	r := spore(t, "", "--store", store, "run", "--cpus", "2", "--memory", "256M", "--capture", "base", "--", "/bin/sh", "-c", warm)
	if r.code != 0 || !strings.Contains(r.stderr, "captured base as") {
		t.Fatalf("capture: status %d\nstderr:\n%s", r.code, r.stderr)
	}

	check := `a=$(cat /tmp/count); sleep 1; b=$(cat /tmp/count); cat /tmp/warm; echo $a $b; nproc`
	r = spore(t, "", "--store", store, "--json", "run", "--from", "base", "--capture", "child", "--", "/bin/sh", "-c", check)
	if r.code != 0 {
		t.Fatalf("resume: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || lines[0] != "warm" || lines[2] != "2" {
		t.Fatalf("resumed guest printed %q, want the warm file, two counts and 2 CPUs", r.stdout)
	}
	counts := strings.Fields(lines[1])
	a, _ := strconv.Atoi(counts[0])
	b, _ := strconv.Atoi(counts[1])
	if a < 1 || b <= a {
		t.Errorf("counter after resume: %d then %d, want it running on from before the capture", a, b)
	}

	s := parseSummary(t, r.stderr)
	if s.From == "" || s.Commit == "" || s.Pager == nil || s.Capture == nil {
		t.Fatalf("summary lacks from, commit, pager or capture: %+v", s)
	}
	ramChunks := uint64(256<<20) / (64 << 10)
	if paged := s.Pager.ChunksCopied + s.Pager.ChunksZeroed; paged == 0 || paged >= ramChunks {
		t.Errorf("resume paged in %d of %d chunks; lazy restore should read some, not all", paged, ramChunks)
	}
	if !s.Capture.Incremental {
		t.Error("capture after a resume was not incremental")
	}
	dirtyBytes := int64(s.Capture.DirtyPages) * 4096
	if limit := dirtyBytes*12/10 + 256<<10; s.Capture.Memory.BytesWritten > limit {
		t.Errorf("capture wrote %d bytes of memory for %d dirty bytes (limit %d)", s.Capture.Memory.BytesWritten, dirtyBytes, limit)
	}

	r = spore(t, "", "--store", store, "--json", "log", "child")
	var history []struct {
		ID      string   `json:"id"`
		Parents []string `json:"parents"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &history); err != nil || r.code != 0 {
		t.Fatalf("log: status %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if len(history) != 2 || history[0].ID != s.Commit || len(history[0].Parents) != 1 || history[0].Parents[0] != history[1].ID {
		t.Errorf("log of child is not child -> base: %+v", history)
	}

	// The saved state is readable by name.
	for entry, want := range map[string][]string{
		"vcpu/0":      {"pc ", "pstate ", "MIDR_EL1 "},
		"devices/gic": {"distributor:", "ICC_SRE_EL1"},
		"config":      {`"memory_bytes": 268435456`},
	} {
		r = spore(t, "", "--store", store, "show", "child:"+entry)
		for _, w := range want {
			if r.code != 0 || !strings.Contains(r.stdout, w) {
				t.Errorf("show child:%s lacks %q (status %d):\n%s%s", entry, w, r.code, r.stdout, r.stderr)
			}
		}
	}
}

func TestResumeUnknownRefFails(t *testing.T) {
	sporeBinary(t)
	r := spore(t, "", "--store", t.TempDir(), "run", "--from", "no-such-ref", "--", "/bin/true")
	if r.code != 2 || !strings.Contains(r.stderr, "no-such-ref") {
		t.Errorf("resume of an unknown ref: status %d, stderr %q; want 2 and the name", r.code, r.stderr)
	}
}

// TestCaptureRunningCommandAndAttach captures a guest while its command
// still runs, then resumes the commit without a command: spore attaches to
// the saved session and its output continues where it stopped, with no
// line lost or repeated.
func TestCaptureRunningCommandAndAttach(t *testing.T) {
	sporeBinary(t)
	store := t.TempDir()

	count := `i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo line $i; sleep 0.2; done; exit 7`
	r := spore(t, "", "--store", store, "run", "--capture", "live", "--capture-after", "10s", "--", "/bin/sh", "-c", count)
	if r.code != 0 || !strings.Contains(r.stderr, "still running") {
		t.Fatalf("capture of a running command: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	before := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(before) == 0 || len(before) >= 200 {
		t.Fatalf("output before the capture has %d lines, expected some but not all 200", len(before))
	}

	r = spore(t, "", "--store", store, "run", "--from", "live")
	if r.code != 7 {
		t.Errorf("attached command exited %d, want its own status 7\nstderr:\n%s", r.code, r.stderr)
	}
	all := append(before, strings.Split(strings.TrimSpace(r.stdout), "\n")...)
	if len(all) != 200 {
		t.Fatalf("%d lines before and after the capture together, want 200:\n%s", len(all), strings.Join(all, "\n"))
	}
	for i, line := range all {
		if want := "line " + strconv.Itoa(i+1); line != want {
			t.Fatalf("line %d is %q, want %q", i+1, line, want)
		}
	}

	r = spore(t, "", "--store", store, "run", "--from", "live", "--capture", "again", "--", "/bin/true")
	if r.code != 0 {
		t.Fatalf("resume with a command: status %d\nstderr:\n%s", r.code, r.stderr)
	}
	r = spore(t, "", "--store", store, "run", "--from", "again")
	if r.code != 2 || !strings.Contains(r.stderr, "give a command") {
		t.Errorf("attach to a commit without a running command: status %d, stderr %q; want 2 and a hint", r.code, r.stderr)
	}
}
