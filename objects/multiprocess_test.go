package objects

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// startWorker starts this test binary as a worker process.
func startWorker(t *testing.T, mode, dir string, n int) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, mode, dir, fmt.Sprint(n))
	cmd.Env = append(os.Environ(), helperEnv+"=worker")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

func TestConcurrentWriterAndReaderProcesses(t *testing.T) {
	dir := t.TempDir()
	waitServerGone(t, dir)
	const writers, readers, commits = 3, 2, 15
	type proc struct {
		cmd  *exec.Cmd
		out  *bytes.Buffer
		name string
	}
	var procs []proc
	for i := 0; i < writers; i++ {
		cmd, out := startWorker(t, "write", dir, commits)
		procs = append(procs, proc{cmd, out, fmt.Sprintf("writer %d", i)})
	}
	for i := 0; i < readers; i++ {
		cmd, out := startWorker(t, "read", dir, 40)
		procs = append(procs, proc{cmd, out, fmt.Sprintf("reader %d", i)})
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.cmd.Wait(); err != nil {
				t.Errorf("%s failed: %v\n%s", p.name, err, p.out)
			}
			if strings.Contains(p.out.String(), "Cannot acquire directory lock") {
				t.Errorf("%s printed badger's raw lock error:\n%s", p.name, p.out)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Every commit of every writer must be on the shared chain exactly once.
	s, err := Open(dir, Options{ServerCommand: serverCommand(t), WaitTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, found, err := s.Backend().GetRef("refs/heads/shared")
	if err != nil || !found {
		t.Fatalf("refs/heads/shared: found=%v err=%v", found, err)
	}
	n := 0
	for id := v.ID; ; n++ {
		c, err := s.GetCommit(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Parents) == 0 {
			n++
			break
		}
		id = c.Parents[0]
	}
	if n != writers*commits {
		t.Fatalf("shared history has %d commits, want %d", n, writers*commits)
	}
	log, err := s.Backend().Reflog("refs/heads/shared")
	if err != nil || len(log) != writers*commits {
		t.Fatalf("reflog has %d entries (%v), want %d", len(log), err, writers*commits)
	}
}

func TestOpenWaitsForHolderAndNamesIt(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenDB(dir, DBOptions{MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var msgs []string
	start := time.Now()
	_, err = Open(dir, Options{WaitTimeout: 400 * time.Millisecond, Logf: func(f string, a ...any) {
		msgs = append(msgs, fmt.Sprintf(f, a...))
	}})
	if err == nil {
		t.Fatal("Open succeeded while another holder kept the database without serving it")
	}
	if time.Since(start) < 400*time.Millisecond {
		t.Errorf("Open gave up after %v, before the wait timeout", time.Since(start))
	}
	holder := fmt.Sprintf("process %d", os.Getpid())
	if !strings.Contains(err.Error(), holder) || strings.Contains(err.Error(), "Cannot acquire") {
		t.Errorf("error = %q, want it to name %s and not be badger's lock error", err, holder)
	}
	if len(msgs) != 1 || !strings.Contains(msgs[0], "waiting") || !strings.Contains(msgs[0], holder) {
		t.Errorf("wait messages = %q, want one naming %s", msgs, holder)
	}
}

func TestInProcessServerServesOtherOpeners(t *testing.T) {
	dir := t.TempDir()
	owner, err := Open(dir, Options{DB: DBOptions{MinFreeBytes: -1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := owner.Backend().(*DB); !ok {
		t.Fatalf("first opener without ServerCommand has backend %T, want *DB", owner.Backend())
	}
	id, err := owner.Put(KindChunk, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := client.Backend().(*Client); !ok {
		t.Fatalf("second opener has backend %T, want *Client", client.Backend())
	}
	_, data, err := client.Get(id)
	if err != nil || string(data) != "hello" {
		t.Fatalf("client Get = %q, %v", data, err)
	}
	client.Close()
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestClientReconnectsAfterServerExit(t *testing.T) {
	dir := t.TempDir()
	waitServerGone(t, dir)
	s, err := Open(dir, Options{ServerCommand: serverCommand(t), WaitTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, err := s.Put(KindChunk, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	// Drop the pooled connections so the server has no client, then wait
	// past its idle timeout of 500 ms for it to exit.
	s.Backend().(*Client).dropIdle()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dir + "/" + socketName); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("store server did not exit after its idle timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, data, err := s.Get(id)
	if err != nil || string(data) != "before" {
		t.Fatalf("Get after server exit = %q, %v; want a new server to answer", data, err)
	}
}

func TestWriterSurvivesServerKill(t *testing.T) {
	dir := t.TempDir()
	waitServerGone(t, dir)
	s, err := Open(dir, Options{ServerCommand: serverCommand(t), WaitTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []ID
	for i := 0; i < 40; i++ {
		if i == 20 {
			killServer(t, dir)
		}
		id, err := s.Put(KindChunk, []byte(fmt.Sprintf("object %d", i)))
		if err != nil {
			t.Fatalf("put %d after the server was killed: %v", i, err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if _, _, err := s.Get(id); err != nil {
			t.Fatal(err)
		}
	}
}

// killServer sends SIGKILL to the process recorded as the store's holder.
func killServer(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(dir + "/" + ownerFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid == os.Getpid() {
		t.Fatalf("owner file %q does not name a server process", b)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
}
