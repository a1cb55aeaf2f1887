package vm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testChunk is the chunk size of newTestPager.
const testChunk = 64 << 10

// sharedTestDir returns a backing directory path (not yet created) inside
// a fresh directory on /dev/shm, which is removed after the test.
func sharedTestDir(t *testing.T) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(sharedMemoryParent, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skipf("%s is not a tmpfs here (statfs: %v)", sharedMemoryParent, err)
	}
	parent, err := os.MkdirTemp(sharedMemoryParent, "spore-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	return filepath.Join(parent, "spore")
}

func openTestBacking(t *testing.T, dir, name string, pager *slicePager) *SharedMemory {
	t.Helper()
	shared, err := OpenSharedMemory(dir, name, uint64(len(pager.image)), pager, nil)
	if err != nil {
		t.Fatal(err)
	}
	return shared
}

// fileExists reports whether path exists, failing the test on other errors.
func fileExists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// readBackingFile returns [off, off+length) of the file at path.
func readBackingFile(t *testing.T, path string, off, length uint64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make([]byte, length)
	if _, err := f.ReadAt(out, int64(off)); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenSharedMemorySharesFile(t *testing.T) {
	dir := sharedTestDir(t)
	pagerA, pagerB := newTestPager(), newTestPager()
	a := openTestBacking(t, dir, "index", pagerA)
	b := openTestBacking(t, dir, "index", pagerB)
	path := filepath.Join(dir, "index")
	if a.Path() != path {
		t.Errorf("Path() = %q, want %q", a.Path(), path)
	}

	fiDir, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fiDir.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode %#o, want 0700", perm)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %#o, want 0600", perm)
	}
	if fi.Size() != int64(len(pagerA.image)) {
		t.Errorf("file has %d bytes, want %d", fi.Size(), len(pagerA.image))
	}

	// a writes chunk 0; b finds it in the file without reading its pager.
	if _, err := a.populate(0); err != nil {
		t.Fatal(err)
	}
	result, err := b.populate(0)
	if err != nil {
		t.Fatal(err)
	}
	if result.copied || result.hole {
		t.Errorf("second backing populated chunk 0 as %+v, want it found in the file", result)
	}
	if n := pagerB.reads[0]; n != 0 {
		t.Errorf("second backing read chunk 0 from its pager %d times, want 0", n)
	}
	if got := b.Stats().ChunksFound; got != 1 {
		t.Errorf("second backing found %d chunks in the file, want 1", got)
	}
	if got := readBackingFile(t, path, 0, testChunk); !bytes.Equal(got, pagerA.image[:testChunk]) {
		t.Error("the file's chunk 0 differs from the image")
	}
	if got := b.Stats().ResidentBytes; got != testChunk {
		t.Errorf("second backing reports %d resident bytes, want %d (chunk 0)", got, testChunk)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !fileExists(t, path) {
		t.Fatal("the file was removed while a second backing still uses it")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if fileExists(t, path) {
		t.Error("the file is still there after its last backing closed")
	}
}

func TestOpenSharedMemorySweepsUnusedFiles(t *testing.T) {
	dir := sharedTestDir(t)
	busy := openTestBacking(t, dir, "busy", newTestPager())
	defer busy.Close()
	// A file that no process holds a lock on, as a killed process leaves.
	stale := filepath.Join(dir, "stale")
	if err := os.WriteFile(stale, []byte("left behind"), 0o600); err != nil {
		t.Fatal(err)
	}

	fresh := openTestBacking(t, dir, "fresh", newTestPager())
	defer fresh.Close()
	if fileExists(t, stale) {
		t.Error("an unlocked file was not removed by the sweep")
	}
	if !fileExists(t, busy.Path()) {
		t.Error("the sweep removed a file that another backing holds")
	}
}

func TestOpenSharedMemoryReusesOwnStaleFile(t *testing.T) {
	dir := sharedTestDir(t)
	pager := newTestPager()
	first := openTestBacking(t, dir, "index", pager)
	if _, err := first.populate(0); err != nil {
		t.Fatal(err)
	}
	// Drop the lock without Close, as a killed process does.
	first.file.Close()
	first.dir.Close()

	again := openTestBacking(t, dir, "index", newTestPager())
	defer again.Close()
	if got := again.Stats().ResidentBytes; got != testChunk {
		t.Errorf("reopened file holds %d bytes, want the %d of chunk 0 written before", got, testChunk)
	}
}

func TestOpenSharedMemoryRejectsOtherSize(t *testing.T) {
	dir := sharedTestDir(t)
	pager := newTestPager()
	first := openTestBacking(t, dir, "index", pager)
	defer first.Close()

	_, err := OpenSharedMemory(dir, "index", uint64(len(pager.image))+4096, pager, nil)
	if err == nil {
		t.Fatal("opening a file of another size succeeded")
	}
	if !strings.Contains(err.Error(), first.Path()) {
		t.Errorf("error %q does not name the file %s", err, first.Path())
	}
}

func TestOpenSharedMemoryRejectsBadName(t *testing.T) {
	dir := sharedTestDir(t)
	for _, name := range []string{"", ".", "..", "a/b"} {
		_, err := OpenSharedMemory(dir, name, uint64(len(testImage())), newTestPager(), nil)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("name %q: error %v, want one naming it", name, err)
		}
	}
}

func TestOpenSharedMemoryRejectsBadDirectory(t *testing.T) {
	base := filepath.Dir(sharedTestDir(t))
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}

	symlink := filepath.Join(base, "symlink")
	if err := os.Symlink(real, symlink); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, dir, want string
	}{
		{"symlink", symlink, "is a symlink"},
		{"mode 0755", open, "chmod 700"},
		{"regular file", file, "is not a directory"},
		{"relative path", "spore-relative", "not an absolute path"},
		{"missing parent", filepath.Join(base, "missing", "spore"), "parent directory must exist"},
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		if err := os.Mkdir(other, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ name, dir, want string }{"other owner", other, "owned by uid 65534"})
	} else {
		t.Log("not root: the case of a directory of another owner is not run")
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := OpenSharedMemory(c.dir, "index", uint64(len(testImage())), newTestPager(), nil)
			if err == nil {
				t.Fatalf("directory %s was accepted", c.dir)
			}
			if !strings.Contains(err.Error(), c.dir) {
				t.Errorf("error %q does not name %s", err, c.dir)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if !errors.Is(err, ErrSharedMemoryFile) {
				t.Errorf("error %q does not match ErrSharedMemoryFile", err)
			}
		})
	}
	if entries, err := os.ReadDir(real); err != nil || len(entries) != 0 {
		t.Errorf("the symlink's target holds %d entries (%v), want none", len(entries), err)
	}
}

func TestOpenSharedMemoryRejectsNonTmpfs(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Skipf("%s is on tmpfs here", dir)
	}
	backing := filepath.Join(dir, "spore")
	_, err := OpenSharedMemory(backing, "index", uint64(len(testImage())), newTestPager(), nil)
	if err == nil || !strings.Contains(err.Error(), "not on tmpfs") {
		t.Errorf("directory off tmpfs: error %v, want one saying it is not on tmpfs", err)
	}
}

func TestDefaultSharedMemoryDir(t *testing.T) {
	var st unix.Statfs_t
	err := unix.Statfs(sharedMemoryParent, &st)
	want := ""
	if err == nil && st.Type == unix.TMPFS_MAGIC {
		want = fmt.Sprintf("/dev/shm/spore-%d", os.Geteuid())
	}
	if got := DefaultSharedMemoryDir(); got != want {
		t.Errorf("DefaultSharedMemoryDir() = %q, want %q", got, want)
	}
}

// TestSharedMemoryFullBackingCopiesPrivately makes the backing's writes
// fail as a full tmpfs does. The seam is needed because a small tmpfs
// would need a mount, which neither spore nor its tests may do. Chunk 2's
// write stores its first page and then fails, as on a tmpfs that fills up
// part way. The write of the short last chunk fails at once.
func TestSharedMemoryFullBackingCopiesPrivately(t *testing.T) {
	skipWithoutUserfaultfd(t)
	dir := sharedTestDir(t)
	pager := newTestPager()
	shared := openTestBacking(t, dir, "index", pager)
	defer shared.Close()
	write := shared.writeAt
	shared.writeAt = func(data []byte, off int64) (int, error) {
		switch off {
		case 2 * testChunk:
			n, err := write(data[:4096], off)
			if err != nil {
				return n, err
			}
			return n, &os.PathError{Op: "write", Path: shared.Path(), Err: syscall.ENOSPC}
		case 4 * testChunk:
			return 0, &os.PathError{Op: "write", Path: shared.Path(), Err: syscall.ENOSPC}
		}
		return write(data, off)
	}

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	a := mapSharedChildLogging(t, shared, logger)
	b := mapSharedChildLogging(t, shared, logger)
	size := uint64(len(pager.image))
	if got := readThroughKernel(t, a, 0, size); !bytes.Equal(got, pager.image) {
		t.Error("first child reads other bytes than the image")
	}
	if got := readThroughKernel(t, b, 0, size); !bytes.Equal(got, pager.image) {
		t.Error("second child reads other bytes than the image")
	}

	stats := shared.Stats()
	if stats.ChunksPrivate != 4 {
		t.Errorf("backing copied %d chunks privately, want 4 (chunks 2 and 4 in each child)", stats.ChunksPrivate)
	}
	if stats.ChunksCopied != 1 {
		t.Errorf("backing wrote %d chunks into the file, want 1 (chunk 0)", stats.ChunksCopied)
	}
	if want := uint64(testChunk + 4096); stats.ResidentBytes != want {
		t.Errorf("file holds %d bytes, want %d (chunk 0 and the first page of chunk 2)", stats.ResidentBytes, want)
	}
	for i, c := range []*sharedChild{a, b} {
		// At least the 15 pages of chunk 2 after the first one and the page
		// of chunk 4 are private copies.
		if usage := smapsUsage(t, c); usage.Anonymous < testChunk {
			t.Errorf("child %d has %d bytes of private pages, want at least %d", i, usage.Anonymous, testChunk)
		}
	}

	warnings := strings.Count(logs.String(), "shared guest memory is full")
	if warnings != 1 {
		t.Errorf("logged %d warnings about the full backing, want 1:\n%s", warnings, logs.String())
	}
	if !strings.Contains(logs.String(), dir) {
		t.Errorf("the warning does not name the directory %s:\n%s", dir, logs.String())
	}
}

func TestSharedMemoryWriteErrorIsReported(t *testing.T) {
	dir := sharedTestDir(t)
	shared := openTestBacking(t, dir, "index", newTestPager())
	defer shared.Close()
	shared.writeAt = func(data []byte, off int64) (int, error) {
		return 0, &os.PathError{Op: "write", Path: shared.Path(), Err: syscall.EIO}
	}
	_, err := shared.populate(0)
	if err == nil || !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), shared.Path()) {
		t.Errorf("populate with a failing write: error %v, want EIO naming %s", err, shared.Path())
	}
	if _, err := shared.populate(0); err == nil {
		t.Error("a second populate succeeded: a failed write must not be remembered as done")
	}
}

// Environment of the helper process of TestSharedMemoryAcrossProcesses.
const (
	helperDirEnv  = "SPORE_SHARED_HELPER_DIR"
	helperModeEnv = "SPORE_SHARED_HELPER_MODE"
)

// TestSharedMemoryHelperProcess is the other process of the cross-process
// tests. It opens the backing "index" in the directory named by its
// environment, writes chunk 2 into it, maps the file and reads chunk 2
// through the mapping, and prints "ready". Then it closes the backing and
// exits (mode "exit"), or waits until it is killed (mode "hold").
func TestSharedMemoryHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("runs only as the helper process of TestSharedMemoryAcrossProcesses")
	}

	pager := newTestPager()
	shared := openTestBacking(t, dir, "index", pager)
	if _, err := shared.populate(2); err != nil {
		t.Fatal(err)
	}

	// Without userfaultfd, only pages that are in the file may be read
	// here: a read of a missing page would add a zero page to the file.
	mem, err := shared.mapPrivate()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mem[2*testChunk:3*testChunk], pager.image[2*testChunk:3*testChunk]) {
		t.Fatal("helper's mapping of chunk 2 differs from the image")
	}

	fmt.Println("ready")
	if os.Getenv(helperModeEnv) == "hold" {
		// A sleep, not an empty select: with no goroutine runnable and no
		// timer pending, the runtime would end the process as deadlocked.
		time.Sleep(10 * time.Minute)
		t.Fatal("helper was not killed within 10 minutes")
	}

	if err := unix.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	if err := shared.Close(); err != nil {
		t.Fatal(err)
	}
}

// startHelper starts the helper process and waits until it wrote chunk 2.
func startHelper(t *testing.T, dir, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSharedMemoryHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperModeEnv+"="+mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})

	ready := make(chan error, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if scanner.Text() == "ready" {
				ready <- nil
				io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- fmt.Errorf("helper ended its output without ready (%v)", scanner.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("helper did not get ready in 2 minutes\nstderr:\n%s", stderr.String())
	}
	return cmd
}

// killHelper kills the helper with SIGKILL and checks that the signal,
// not an exit of its own, ended it.
func killHelper(t *testing.T, helper *exec.Cmd) {
	t.Helper()
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	status, ok := helper.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !status.Signaled() || status.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want SIGKILL: it must still run when it is killed", helper.ProcessState)
	}
}

func TestSharedMemoryAcrossProcesses(t *testing.T) {
	if os.Getenv(helperDirEnv) != "" {
		t.Skip("this is the helper process")
	}
	skipWithoutUserfaultfd(t)

	t.Run("killed writer", func(t *testing.T) {
		dir := sharedTestDir(t)
		helper := startHelper(t, dir, "hold")
		path := filepath.Join(dir, "index")
		pager := newTestPager()
		if got := readBackingFile(t, path, 2*testChunk, testChunk); !bytes.Equal(got, pager.image[2*testChunk:3*testChunk]) {
			t.Fatal("the file does not hold the chunk the helper wrote")
		}

		shared := openTestBacking(t, dir, "index", pager)
		child := mapSharedChild(t, shared)
		if got := readThroughKernel(t, child, 0, uint64(len(pager.image))); !bytes.Equal(got, pager.image) {
			t.Error("child reads other bytes than the image")
		}
		if n := pager.reads[2*testChunk]; n != 0 {
			t.Errorf("this process read chunk 2 from its pager %d times; it should map the helper's pages", n)
		}
		if usage := smapsUsage(t, child); usage.Shared < testChunk {
			t.Errorf("child's mapping shares %d bytes with the helper, want at least chunk 2 (%d)", usage.Shared, testChunk)
		}

		killHelper(t, helper)
		if !fileExists(t, path) {
			t.Fatal("the file is gone although this process still uses it")
		}
		// The munmap of the child must come before Close, as for a machine.
		child.lazy.close()
		child.ram.close()
		if err := shared.Close(); err != nil {
			t.Fatal(err)
		}
		if fileExists(t, path) {
			t.Error("the file is still there after its last user closed it")
		}
	})

	t.Run("killed last user leaves a file the sweep removes", func(t *testing.T) {
		dir := sharedTestDir(t)
		helper := startHelper(t, dir, "hold")
		killHelper(t, helper)
		path := filepath.Join(dir, "index")
		if !fileExists(t, path) {
			t.Fatal("the file of a killed process is gone before any sweep")
		}

		other := openTestBacking(t, dir, "other", newTestPager())
		defer other.Close()
		if fileExists(t, path) {
			t.Error("the sweep left the file of the killed process")
		}
	})

	t.Run("exiting user keeps the file for the other", func(t *testing.T) {
		dir := sharedTestDir(t)
		pager := newTestPager()
		// The directory must exist before the helper starts, so open first.
		shared := openTestBacking(t, dir, "index", pager)
		helper := startHelper(t, dir, "exit")
		if err := helper.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
		path := filepath.Join(dir, "index")
		if !fileExists(t, path) {
			t.Fatal("the helper's Close removed the file while this process uses it")
		}
		result, err := shared.populate(2)
		if err != nil {
			t.Fatal(err)
		}
		if result.copied || pager.reads[2*testChunk] != 0 {
			t.Errorf("chunk 2 was read again (%+v, %d pager reads), want it found in the file", result, pager.reads[2*testChunk])
		}
		if err := shared.Close(); err != nil {
			t.Fatal(err)
		}
		if fileExists(t, path) {
			t.Error("the file is still there after its last user closed it")
		}
	})
}
