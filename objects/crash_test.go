package objects

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKill9DuringImportAndRefUpdate kills a process that imports images
// and moves a ref, at 50 random points. After each kill the store must
// open, every object the refs reach must be intact, and the ref must hold
// either the value before the interrupted update or the new one.
func TestKill9DuringImportAndRefUpdate(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(42, 42))
	const kills = 50
	attempts := 0
	for i := 0; i < kills; i++ {
		before := readMainRef(t, dir)

		cmd := exec.Command(exe, "crash", dir, fmt.Sprint(10+i))
		cmd.Env = append(os.Environ(), helperEnv+"=worker")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill at a random time after the store is open; every fifth run
		// is killed during the open itself.
		if i%5 != 0 {
			select {
			case l := <-lines:
				if l != "opened" {
					t.Fatalf("run %d: worker printed %q first: %s", i, l, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("run %d: worker did not open the store: %s", i, stderr.String())
			}
		}
		time.Sleep(time.Duration(r.IntN(120)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)

		// Read every line before Wait, because Wait closes the pipe and
		// would drop lines the reader has not taken yet, such as the last
		// attempt.
		var lastAttemptOld, lastAttemptNew string
		for l := range lines {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "attempt" {
				lastAttemptOld, lastAttemptNew = f[1], f[2]
				if lastAttemptOld == ZeroID.String() {
					lastAttemptOld = ""
				}
			}
		}
		_ = cmd.Wait()
		if lastAttemptNew != "" {
			attempts++
		}
		after := readMainRef(t, dir)
		switch {
		case lastAttemptNew == "" && after != before:
			t.Fatalf("run %d: ref moved from %q to %q without an update attempt", i, before, after)
		case lastAttemptNew != "" && after != lastAttemptOld && after != lastAttemptNew:
			t.Fatalf("run %d: ref is %q, want the old %q or the new %q of the interrupted update", i, after, lastAttemptOld, lastAttemptNew)
		}
		checkStoreIntact(t, dir, i)
	}
	// The kills must land after ref updates began, not only during opens.
	if attempts < kills/4 {
		t.Fatalf("only %d of %d runs reached a ref update before the kill", attempts, kills)
	}
	t.Logf("%d of %d runs were killed after a ref update began", attempts, kills)
}

// readMainRef opens the store in this process and returns refs/heads/main
// in hex, or "" when it does not exist.
func readMainRef(t *testing.T, dir string) string {
	t.Helper()
	db, err := OpenDB(dir, DBOptions{MinFreeBytes: -1})
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer db.Close()
	v, found, err := db.GetRef("refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return ""
	}
	return v.ID.String()
}

// checkStoreIntact runs fsck over every ref and reflog entry.
func checkStoreIntact(t *testing.T, dir string, run int) {
	t.Helper()
	db, err := OpenDB(dir, DBOptions{MinFreeBytes: -1})
	if err != nil {
		t.Fatalf("run %d: open: %v", run, err)
	}
	s := NewStore(db)
	defer s.Close()
	roots := map[string]ID{}
	refs, err := db.ListRefs("")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		roots[ref.Name] = ref.Value.ID
		log, err := db.Reflog(ref.Name)
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range log {
			roots[fmt.Sprintf("%s@{%d}", ref.Name, j)] = e.New
		}
	}
	report, err := s.Fsck(roots)
	if err != nil {
		t.Fatalf("run %d: fsck: %v", run, err)
	}
	if len(report.Problems) > 0 {
		t.Fatalf("run %d: fsck found %d problems, first: %+v", run, len(report.Problems), report.Problems[0])
	}
}
