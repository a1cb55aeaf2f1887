package guest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/vm"
)

// TestShareMemoryChildren resumes three children of one commit in this
// process with ShareMemory. They must map one backing, each must keep its
// own writes, clean pages must be shared, a capture of one child must be
// incremental and resume with that child's data, and the backing must be
// released with the last child.
func TestShareMemoryChildren(t *testing.T) {
	g := bootTestGuest(t, Options{MemoryBytes: 256 << 20})
	store, refsDB := openTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	run(t, ctx, g, `echo base > /tmp/base`)
	id, _, err := g.Capture(CaptureOptions{Store: store, Refs: refsDB, Ref: "refs/heads/base"})
	if err != nil {
		t.Fatal(err)
	}
	memory := g.parentMemory
	g.Kill()

	var children []*Guest
	for i := range 3 {
		console := &syncBuffer{}
		child, err := Resume(ctx, store, id, "base", Options{ShareMemory: true, KernelLog: console})
		if err != nil {
			t.Fatalf("child %d: resume: %v\nconsole:\n%s", i, err, console.String())
		}
		defer child.Kill()
		children = append(children, child)
	}
	for i, child := range children {
		if child.sharedMemory != children[0].sharedMemory {
			t.Fatalf("child %d maps another backing than child 0", i)
		}
	}

	for i, child := range children {
		run(t, ctx, child, fmt.Sprintf(`echo child-%d > /tmp/mine`, i))
	}
	for i, child := range children {
		if got, want := run(t, ctx, child, `cat /tmp/mine`), fmt.Sprintf("child-%d\n", i); got != want {
			t.Errorf("child %d reads %q from /tmp/mine, want %q", i, got, want)
		}
		if got := run(t, ctx, child, `cat /tmp/base`); got != "base\n" {
			t.Errorf("child %d reads %q from /tmp/base, want %q", i, got, "base\n")
		}
	}

	backing, ok := children[0].SharedMemoryStats()
	if !ok {
		t.Fatal("child 0 reports no shared backing")
	}
	var copied uint64
	for i, child := range children {
		usage, err := child.MemoryUsage()
		if err != nil {
			t.Fatal(err)
		}
		paged := child.PagerStats()
		copied += paged.ChunksCopied
		t.Logf("child %d: RSS %d KiB, PSS %d KiB, shared %d KiB, private copies %d KiB; copied %d chunks, zeroed %d, %d faults",
			i, usage.RSS>>10, usage.PSS>>10, usage.Shared>>10, usage.Anonymous>>10, paged.ChunksCopied, paged.ChunksZeroed, paged.Faults)
		if usage.Shared == 0 || usage.PSS >= usage.RSS {
			t.Errorf("child %d: %d KiB shared, PSS %d KiB of RSS %d KiB; want shared pages and PSS below RSS", i, usage.Shared>>10, usage.PSS>>10, usage.RSS>>10)
		}
	}
	t.Logf("backing: %d chunks read, %d holes, %d KiB resident", backing.ChunksCopied, backing.ChunksHoles, backing.ResidentBytes>>10)
	if copied != backing.ChunksCopied {
		t.Errorf("children copied %d chunks in all, the backing %d; each chunk should be read once", copied, backing.ChunksCopied)
	}
	if first := children[0].PagerStats().ChunksCopied; children[1].PagerStats().ChunksCopied*2 > first {
		t.Errorf("child 1 read %d chunks from the store after child 0 read %d; it should map most of them from the backing",
			children[1].PagerStats().ChunksCopied, first)
	}

	captured, stats, err := children[1].Capture(CaptureOptions{Store: store, Refs: refsDB, Ref: "refs/heads/child-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !stats.Incremental {
		t.Error("capture of a child with shared memory was not incremental")
	}
	commit, err := store.GetCommit(captured)
	if err != nil {
		t.Fatal(err)
	}
	if len(commit.Parents) != 1 || commit.Parents[0] != id {
		t.Errorf("captured child's parents %v, want [%s]", commit.Parents, id)
	}
	children[1].Continue()
	if got := run(t, ctx, children[1], `cat /tmp/mine`); got != "child-1\n" {
		t.Errorf("child 1 after its capture reads %q, want %q", got, "child-1\n")
	}

	for _, child := range children {
		child.Kill()
	}
	if sharedBackingRegistered(store, memory) {
		t.Error("the backing is still registered after its last child was killed")
	}

	resumed, err := Resume(ctx, store, captured, "child-1", Options{ShareMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Kill()
	if got := run(t, ctx, resumed, `cat /tmp/mine`); got != "child-1\n" {
		t.Errorf("resumed capture of child 1 reads %q, want %q", got, "child-1\n")
	}
	if got := run(t, ctx, resumed, `cat /tmp/base`); got != "base\n" {
		t.Errorf("resumed capture of child 1 reads %q from /tmp/base, want %q", got, "base\n")
	}
}

// sharedBackingRegistered reports whether a shared backing of the memory
// index is registered in this process.
func sharedBackingRegistered(store *objects.Store, index objects.ID) bool {
	sharedBackings.Lock()
	defer sharedBackings.Unlock()
	_, ok := sharedBackings.byIndex[sharedKey{store: store, index: index}]
	return ok
}

// TestAcquireSharedMemoryByDirectory acquires backings of one memory index
// with and without a directory. Guests with the same directory get one
// file backing, a guest without one gets a memfd, and the last release
// removes the file. No guest runs, so no KVM is needed.
func TestAcquireSharedMemoryByDirectory(t *testing.T) {
	dir := filepath.Join(tmpfsTempDir(t), "spore")
	store, _ := openTestStore(t)
	index := objects.ID{1, 2, 3}
	const size, chunk = 1 << 20, 64 << 10

	first, releaseFirst, err := acquireSharedMemory(store, index, size, chunk, dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	second, releaseSecond, err := acquireSharedMemory(store, index, size, chunk, dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	memfd, releaseMemfd, err := acquireSharedMemory(store, index, size, chunk, "", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer releaseMemfd()

	if second != first {
		t.Error("two guests with one directory got different backings")
	}
	if memfd == first {
		t.Error("a guest without a directory got the file backing")
	}
	if memfd.Path() != "" {
		t.Errorf("the backing without a directory has the path %q, want a memfd", memfd.Path())
	}
	want := filepath.Join(dir, index.String())
	if first.Path() != want {
		t.Errorf("file backing path %q, want %q", first.Path(), want)
	}

	releaseFirst()
	if _, err := os.Stat(want); err != nil {
		t.Errorf("the file is gone while a guest still maps it: %v", err)
	}
	releaseSecond()
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is still there after the last release (stat: %v)", err)
	}
}

// TestAcquireSharedMemoryUnusableDirectory checks that guests whose
// shared memory directory cannot be used (here: open to others) get one
// memfd backing of this process, with one warning.
func TestAcquireSharedMemoryUnusableDirectory(t *testing.T) {
	dir := filepath.Join(tmpfsTempDir(t), "spore")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	store, _ := openTestStore(t)
	index := objects.ID{4, 5, 6}
	const size, chunk = 1 << 20, 64 << 10
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	first, releaseFirst, err := acquireSharedMemory(store, index, size, chunk, dir, logger)
	if err != nil {
		t.Fatalf("first guest: %v", err)
	}
	defer releaseFirst()
	second, releaseSecond, err := acquireSharedMemory(store, index, size, chunk, dir, logger)
	if err != nil {
		t.Fatalf("second guest: %v", err)
	}
	defer releaseSecond()

	if first.Path() != "" {
		t.Errorf("the backing is the file %q, want a memfd", first.Path())
	}
	if second != first {
		t.Error("two guests of one unusable directory got different backings")
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for two guests, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), dir) {
		t.Errorf("the warning does not name %s:\n%s", dir, logs.String())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%d files were created in the unusable directory", len(entries))
	}
}

// tmpfsTempDir returns a new directory in /dev/shm that is removed with
// the test, and skips the test where /dev/shm is not a tmpfs.
func tmpfsTempDir(t *testing.T) string {
	t.Helper()
	if vm.DefaultSharedMemoryDir() == "" {
		t.Skip("/dev/shm is not a tmpfs here")
	}
	dir, err := os.MkdirTemp("/dev/shm", "spore-test-")
	if err != nil {
		t.Skipf("no /dev/shm here: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
