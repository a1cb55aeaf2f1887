package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spore-vm/spore/vm"
)

// TestRunSharesMemoryAcrossProcesses resumes one commit in two spore run
// processes at once. While both wait for input, each must map the same
// backing file under /dev/shm/spore-UID with pages that the other maps
// too, so their PSS of it sums to less than their RSS. After both exit,
// the file must be gone.
func TestRunSharesMemoryAcrossProcesses(t *testing.T) {
	sporeBinary(t)
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("/dev/shm is not a tmpfs here (statfs: %v, type %#x); spore would fall back to a memfd", err, st.Type)
	}
	dir := fmt.Sprintf("/dev/shm/spore-%d", os.Geteuid())

	store := t.TempDir()
	r := spore(t, "", "--store", store, "run", "--memory", "256M", "--capture", "base", "--", "/bin/sh", "-c", "echo warm > /tmp/warm")
	if r.code != 0 {
		t.Fatalf("capture: status %d\n%s", r.code, r.stderr)
	}

	// Each guest prints ready and then waits for a line on stdin, so both
	// are resumed and idle while the test reads their mappings.
	script := `cat /tmp/warm; echo ready; read line; echo "got $line"`
	var procs []*sporeProcess
	var inputs []*io.PipeWriter
	for range 2 {
		reader, writer := io.Pipe()
		inputs = append(inputs, writer)
		procs = append(procs, startSpore(t, invocation{stdinReader: reader, timeout: 10 * time.Minute},
			"--store", store, "--json", "run", "-i", "--from", "base", "--", "/bin/sh", "-c", script))
	}
	defer func() {
		for _, w := range inputs {
			w.Close()
		}
	}()

	deadline := time.Now().Add(8 * time.Minute)
	for i, p := range procs {
		for !strings.Contains(p.stdout.String(), "ready\n") {
			if p.exited() {
				r := p.wait(t)
				t.Fatalf("guest %d exited with status %d before it printed ready\nstdout:\n%s\nstderr:\n%s", i, r.code, r.stdout, r.stderr)
			}
			if time.Now().After(deadline) {
				t.Fatalf("guest %d did not print ready within 8 minutes\nstdout:\n%s\nstderr:\n%s", i, p.stdout.String(), p.stderr.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	var rss, pss uint64
	var files []string
	for i, p := range procs {
		usage, paths, err := vm.ProcessMemoryUsage(p.pid(), func(e vm.SmapsEntry) bool {
			return strings.HasPrefix(e.Path, dir+"/")
		})
		if err != nil {
			t.Fatalf("guest %d: %v", i, err)
		}
		t.Logf("guest %d (pid %d): files %v, RSS %d KiB, PSS %d KiB, shared %d KiB, anonymous %d KiB",
			i, p.pid(), paths, usage.RSS>>10, usage.PSS>>10, usage.Shared>>10, usage.Anonymous>>10)
		if len(paths) != 1 {
			t.Fatalf("guest %d maps %d files under %s, want 1: %v", i, len(paths), dir, paths)
		}
		for path := range paths {
			files = append(files, path)
		}
		// A tmpfs page that write() filled stays dirty, because shmem has
		// no writeback, so Shared counts Shared_Dirty pages too.
		if usage.Shared == 0 {
			t.Errorf("guest %d has no pages of the backing that another process maps too", i)
		}
		rss += usage.RSS
		pss += usage.PSS
	}
	if files[0] != files[1] {
		t.Errorf("the guests map different files: %s and %s", files[0], files[1])
	}
	if pss >= rss {
		t.Errorf("PSS of the backing summed over both guests is %d KiB, RSS %d KiB; want PSS below RSS", pss>>10, rss>>10)
	}

	for i, p := range procs {
		io.WriteString(inputs[i], "go\n")
		inputs[i].Close()
		r := p.wait(t)
		if want := "warm\nready\ngot go\n"; r.code != 0 || r.stdout != want {
			t.Errorf("guest %d: status %d, printed %q, want %q\nstderr:\n%s", i, r.code, r.stdout, want, r.stderr)
		}
		logSharedStats(t, i, r.stderr)
	}

	if _, err := os.Stat(files[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the backing file %s is still there after both processes exited (stat: %v)", files[0], err)
	}
}

// logSharedStats logs the shared_memory counters of a spore run --json
// summary, printed last on stderr.
func logSharedStats(t *testing.T, guest int, stderr string) {
	t.Helper()
	start := strings.LastIndex(stderr, "\n{")
	if start < 0 {
		start = strings.Index(stderr, "{")
	}
	if start < 0 {
		t.Errorf("guest %d printed no --json summary:\n%s", guest, stderr)
		return
	}
	var summary struct {
		SharedMemory *struct {
			ChunksCopied  uint64 `json:"chunks_copied"`
			ChunksFound   uint64 `json:"chunks_found"`
			ChunksPrivate uint64 `json:"chunks_private"`
			ResidentBytes uint64 `json:"resident_bytes"`
		} `json:"shared_memory"`
	}
	if err := json.Unmarshal([]byte(stderr[start:]), &summary); err != nil {
		t.Errorf("guest %d: invalid --json summary: %v\n%s", guest, err, stderr)
		return
	}
	if summary.SharedMemory == nil {
		t.Errorf("guest %d: the --json summary has no shared_memory counters:\n%s", guest, stderr)
		return
	}
	s := summary.SharedMemory
	t.Logf("guest %d backing: %d chunks copied, %d found in the file, %d private, %d KiB resident",
		guest, s.ChunksCopied, s.ChunksFound, s.ChunksPrivate, s.ResidentBytes>>10)
}

// TestRunOpenSharedMemoryDirFallsBack resumes a commit while the shared
// memory directory is open to other users. spore run must not use the
// directory, must warn naming it and the fixes, and must still run the
// command, sharing memory only within its own process.
func TestRunOpenSharedMemoryDirFallsBack(t *testing.T) {
	sporeBinary(t)
	dir := fmt.Sprintf("/dev/shm/spore-%d", os.Geteuid())
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })

	store := t.TempDir()
	r := spore(t, "", "--store", store, "run", "--capture", "base", "--", "/bin/true")
	if r.code != 0 {
		t.Fatalf("capture: status %d\n%s", r.code, r.stderr)
	}

	r = spore(t, "", "--store", store, "run", "--from", "base", "--", "/bin/echo", "resumed")
	if r.code != 0 || r.stdout != "resumed\n" {
		t.Errorf("resume with a directory of mode 0755: status %d, printed %q\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"shared only within this process", dir, "chmod 700", "--no-share-memory"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the warning does not mention %q:\n%s", want, r.stderr)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%d files were created in the directory of mode 0755", len(entries))
	}

	r = spore(t, "", "--store", store, "run", "--from", "base", "--no-share-memory", "--", "/bin/echo", "resumed")
	if r.code != 0 || r.stdout != "resumed\n" {
		t.Errorf("resume with --no-share-memory: status %d, printed %q\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, "shared only within this process") {
		t.Errorf("resume with --no-share-memory warns about the shared memory file:\n%s", r.stderr)
	}
}
