package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

// cliEnv makes the test binary run the spore CLI instead of the tests, so
// that tests can run spore commands as processes and so that the store
// server they start on demand is this binary too.
const cliEnv = "SPORE_CLI_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Setenv(cliEnv, "")
	os.Exit(m.Run())
}

// storeDir returns a new store directory. Before the directory is removed,
// the test waits for the store server that its commands started to exit.
func storeDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			// badger locks the database directory itself with flock.
			f, err := os.Open(filepath.Join(dir, "db"))
			if err != nil {
				return
			}
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			f.Close()
			if err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("a store server still holds %s after 15 s", dir)
	})
	return dir
}

// cliResult is the outcome of one spore command.
type cliResult struct {
	stdout, stderr string
	code           int
}

// spore runs a spore command on store dir as a separate process.
func spore(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"--store", dir}, args...)...)
	cmd.Env = append(os.Environ(), cliEnv+"=1", "SPORE_STORE_IDLE_TIMEOUT=500ms")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliResult{stdout.String(), stderr.String(), code}
}

// mustSucceed fails the test unless the command exited with 0.
func (r cliResult) mustSucceed(t *testing.T) cliResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

// testStore opens a store with this binary as its server.
func testStore(t *testing.T, dir string) (*objects.Store, *refs.Refs) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(cliEnv, "1")
	t.Setenv("SPORE_STORE_IDLE_TIMEOUT", "500ms")
	s, err := objects.Open(dir, objects.Options{ServerCommand: []string{exe, "store", "serve"}})
	if err != nil {
		t.Fatal(err)
	}
	return s, refs.New(s.Backend())
}

// forkTree is the history that makeForkTree writes.
type forkTree struct {
	base, warm  objects.ID
	children    []objects.ID
	config      objects.ID
	memory      objects.ID
	memoryBytes []byte
}

// makeForkTree stores base <- warm <- {child 1, child 2, child 3}, with
// refs/heads/main at warm, HEAD pointing to main and fork refs for the
// children. All commits share one tree.
func makeForkTree(t *testing.T, dir string) forkTree {
	t.Helper()
	s, r := testStore(t, dir)
	defer s.Close()
	var ft forkTree
	var err error
	ft.memoryBytes = bytes.Repeat([]byte("spore memory page "), 20000)
	ft.memory, _, err = s.ImportImage(bytes.NewReader(ft.memoryBytes), int64(len(ft.memoryBytes)), objects.IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ft.config, err = s.Put(objects.KindChunk, []byte(`{"ram":"256M","vcpus":2}`)); err != nil {
		t.Fatal(err)
	}
	tree, err := objects.NewTree([]objects.TreeEntry{
		{Name: "config", Kind: objects.KindChunk, ID: ft.config},
		{Name: "memory", Kind: objects.KindTree, ID: ft.memory},
	})
	if err != nil {
		t.Fatal(err)
	}
	treeID, err := s.PutTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	commit := func(msg string, parents ...objects.ID) objects.ID {
		at = at.Add(time.Minute)
		id, err := s.PutCommit(&objects.Commit{Tree: treeID, Parents: parents, Time: at, Author: "test", Message: msg,
			Platform: map[string]string{"arch": "arm64"}, Generation: msg})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	ft.base = commit("boot")
	ft.warm = commit("warm caches", ft.base)
	for i := 1; i <= 3; i++ {
		ft.children = append(ft.children, commit("child "+string(rune('0'+i)), ft.warm))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Set("refs/heads/main", objects.ZeroID, ft.warm, "capture"))
	must(r.SetSymbolic(refs.Head, "refs/heads/main", "init"))
	for i, c := range ft.children {
		must(r.Set("refs/forks/warm/"+string(rune('1'+i)), objects.ZeroID, c, "fork"))
	}
	return ft
}

func TestLogShowsHistory(t *testing.T) {
	dir := storeDir(t)
	ft := makeForkTree(t, dir)

	out := spore(t, dir, "log").mustSucceed(t).stdout
	if !strings.Contains(out, "commit "+ft.warm.String()+" (HEAD, refs/heads/main)") || !strings.Contains(out, "commit "+ft.base.String()) {
		t.Fatalf("log output lacks the two commits with decorations:\n%s", out)
	}
	if strings.Index(out, ft.warm.String()) > strings.Index(out, ft.base.String()) {
		t.Errorf("log is not newest first:\n%s", out)
	}

	var entries []logEntryJSON
	res := spore(t, dir, "--json", "log", "warm/2").mustSucceed(t)
	if err := json.Unmarshal([]byte(res.stdout), &entries); err != nil {
		t.Fatalf("log --json: %v\n%s", err, res.stdout)
	}
	if len(entries) != 3 || entries[0].ID != ft.children[1] || entries[2].ID != ft.base || entries[0].Platform["arch"] != "arm64" {
		t.Fatalf("log --json warm/2 = %+v", entries)
	}
	if got := spore(t, dir, "log", "-n", "1").mustSucceed(t).stdout; strings.Count(got, "commit ") != 1 {
		t.Errorf("log -n 1 printed %d commits", strings.Count(got, "commit "))
	}
}

func TestLogGraphShowsForks(t *testing.T) {
	dir := storeDir(t)
	ft := makeForkTree(t, dir)
	out := spore(t, dir, "log", "--graph", "main").mustSucceed(t).stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("graph has %d lines, want 5:\n%s", len(lines), out)
	}
	if !strings.HasPrefix(lines[0], "* "+ft.base.Short()) || !strings.HasPrefix(lines[1], "└─@ "+ft.warm.Short()) {
		t.Errorf("graph does not start with base and warm:\n%s", out)
	}
	for i, c := range ft.children {
		if !strings.Contains(lines[2+i], c.Short()) || !strings.Contains(lines[2+i], "refs/forks/warm/") {
			t.Errorf("graph line %d lacks child %s and its ref:\n%s", 2+i, c.Short(), out)
		}
	}
	var nodes []logEntryJSON
	res := spore(t, dir, "--json", "log", "--graph").mustSucceed(t)
	if err := json.Unmarshal([]byte(res.stdout), &nodes); err != nil || len(nodes) != 5 || len(nodes[1].Children) != 3 {
		t.Fatalf("log --graph --json = %v, %s", err, res.stdout)
	}
}

func TestShowObjects(t *testing.T) {
	dir := storeDir(t)
	ft := makeForkTree(t, dir)

	out := spore(t, dir, "show", "main").mustSucceed(t).stdout
	if !strings.Contains(out, "commit "+ft.warm.String()) || !strings.Contains(out, "Platform:   arch=arm64") {
		t.Errorf("show main:\n%s", out)
	}
	out = spore(t, dir, "show", "main:config").mustSucceed(t).stdout
	// The VM packages register a formatter for config, which prints it as
	// indented JSON.
	if !strings.Contains(out, "chunk "+ft.config.String()) || !strings.Contains(out, `"ram": "256M"`) {
		t.Errorf("show main:config lacks the formatted config:\n%s", out)
	}
	out = spore(t, dir, "show", "main:memory").mustSucceed(t).stdout
	if !strings.Contains(out, "chunk index node") || !strings.Contains(out, "size 360000 bytes") {
		t.Errorf("show main:memory:\n%s", out)
	}
	raw := spore(t, dir, "show", "--raw", ft.config.String()[:12]).mustSucceed(t).stdout
	if raw != `{"ram":"256M","vcpus":2}` {
		t.Errorf("show --raw = %q", raw)
	}
	res := spore(t, dir, "show", "main:nosuch")
	if res.code != ExitUsage || !strings.Contains(res.stderr, "config, memory") {
		t.Errorf("show of a missing entry: code %d, stderr %s", res.code, res.stderr)
	}
}

func TestRefsAndTags(t *testing.T) {
	dir := storeDir(t)
	ft := makeForkTree(t, dir)

	spore(t, dir, "tag", "v1", "main").mustSucceed(t)
	res := spore(t, dir, "tag", "v1", "warm/1")
	if res.code != ExitUsage || !strings.Contains(res.stderr, "already exists") {
		t.Errorf("tag over an existing tag: code %d, stderr %s", res.code, res.stderr)
	}
	spore(t, dir, "tag", "--force", "v1", "warm/1").mustSucceed(t)

	var list []refs.Ref
	out := spore(t, dir, "--json", "refs").mustSucceed(t).stdout
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	byName := map[string]refs.Ref{}
	for _, r := range list {
		byName[r.Name] = r
	}
	if byName["refs/tags/v1"].Target != ft.children[0] || byName["HEAD"].Value.Symbolic != "refs/heads/main" || byName["HEAD"].Target != ft.warm {
		t.Errorf("refs --json = %s", out)
	}
	if len(list) != 6 {
		t.Errorf("refs lists %d refs, want 6", len(list))
	}

	spore(t, dir, "tag", "-d", "v1").mustSucceed(t)
	if out := spore(t, dir, "refs", "refs/tags/").mustSucceed(t).stdout; out != "" {
		t.Errorf("tag still listed after delete: %s", out)
	}
	for _, bad := range []string{"a..b", "x.lock", "sp ace", "-dash", "a@{1}"} {
		res := spore(t, dir, "tag", "--", bad)
		if res.code != ExitUsage || !strings.Contains(res.stderr, "invalid ref name") {
			t.Errorf("tag %q: code %d, stderr %s", bad, res.code, res.stderr)
		}
	}
}

func TestAmbiguousRevisions(t *testing.T) {
	dir := storeDir(t)
	makeForkTree(t, dir)
	spore(t, dir, "tag", "main", "warm/1").mustSucceed(t)
	res := spore(t, dir, "show", "main")
	if res.code != ExitUsage || !strings.Contains(res.stderr, "refs/heads/main") || !strings.Contains(res.stderr, "refs/tags/main") {
		t.Errorf("ambiguous ref: code %d, stderr %s", res.code, res.stderr)
	}
	res = spore(t, dir, "show", "nosuchref")
	if res.code != ExitFailure || !strings.Contains(res.stderr, "unknown revision") {
		t.Errorf("unknown ref: code %d, stderr %s", res.code, res.stderr)
	}
}

func TestFsckFindsDamage(t *testing.T) {
	dir := storeDir(t)
	ft := makeForkTree(t, dir)
	res := spore(t, dir, "fsck").mustSucceed(t)
	if !strings.Contains(res.stdout, ": 0 problems") {
		t.Fatalf("fsck of a good store: %s", res.stdout)
	}

	// A tree whose entries are one missing object and one stored with
	// bytes that do not match its ID.
	s, r := testStore(t, dir)
	missing := objects.Hash(objects.KindChunk, []byte("never stored"))
	bad := objects.Hash(objects.KindChunk, []byte("good content"))
	if err := s.Backend().Put([]objects.StoredObject{{ID: bad, Value: []byte{0, 1, 'e', 'v', 'i', 'l'}}}); err != nil {
		t.Fatal(err)
	}
	tree := &objects.Tree{Entries: []objects.TreeEntry{
		{Name: "agent", Kind: objects.KindChunk, ID: bad},
		{Name: "net", Kind: objects.KindChunk, ID: missing},
	}}
	treeID, err := s.Put(objects.KindTree, tree.Encode())
	if err != nil {
		t.Fatal(err)
	}
	broken, err := s.Put(objects.KindCommit, (&objects.Commit{Tree: treeID, Parents: []objects.ID{ft.warm}}).Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set("refs/heads/broken", objects.ZeroID, broken, "test"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	res = spore(t, dir, "fsck")
	if res.code != ExitFailure {
		t.Fatalf("fsck of a damaged store exited %d, want %d\n%s", res.code, ExitFailure, res.stdout)
	}
	for _, want := range []string{"missing " + missing.String(), "corrupt " + bad.String(), "needed by: refs/heads/broken"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("fsck output lacks %q:\n%s", want, res.stdout)
		}
	}
	var parsed fsckResult
	res = spore(t, dir, "--json", "fsck")
	if err := json.Unmarshal([]byte(res.stdout), &parsed); err != nil || len(parsed.Problems) != 2 {
		t.Fatalf("fsck --json: %v\n%s", err, res.stdout)
	}
}

func TestGCDeletesOnlyUnreachable(t *testing.T) {
	dir := storeDir(t)
	ft := makeForkTree(t, dir)
	s, _ := testStore(t, dir)
	garbage, err := s.Put(objects.KindChunk, []byte("unreachable"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Within the default grace period the new object stays.
	out := spore(t, dir, "gc").mustSucceed(t).stdout
	if !strings.Contains(out, "deleted 0 objects") {
		t.Errorf("gc within the grace period: %s", out)
	}
	out = spore(t, dir, "gc", "--grace", "1ns").mustSucceed(t).stdout
	if !strings.Contains(out, "deleted 1 objects") {
		t.Errorf("gc --grace 1ns: %s", out)
	}
	if res := spore(t, dir, "show", garbage.String()); res.code == 0 {
		t.Errorf("unreachable object %s still readable after gc", garbage.Short())
	}
	spore(t, dir, "fsck").mustSucceed(t)
	spore(t, dir, "show", ft.children[2].String()).mustSucceed(t)
	out = spore(t, dir, "gc", "--grace", "1ns", "--expire-reflog", "1ns", "--dry-run").mustSucceed(t).stdout
	if !strings.Contains(out, "would expire 5 reflog entries") {
		t.Errorf("gc --expire-reflog --dry-run: %s", out)
	}
	if res := spore(t, dir, "gc", "--grace", "0s"); res.code != ExitUsage {
		t.Errorf("gc --grace 0s exited %d, want %d", res.code, ExitUsage)
	}
}

func TestStoreDirDefaults(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/xdg/data")
	g := &Globals{}
	if dir, err := g.storeDir(); err != nil || dir != "/xdg/data/spore" {
		t.Errorf("storeDir with XDG_DATA_HOME = %q, %v", dir, err)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/home/user")
	if dir, err := g.storeDir(); err != nil || dir != "/home/user/.local/share/spore" {
		t.Errorf("storeDir without XDG_DATA_HOME = %q, %v", dir, err)
	}
	g.Store = "/explicit"
	if dir, err := g.storeDir(); err != nil || dir != "/explicit" {
		t.Errorf("storeDir with --store = %q, %v", dir, err)
	}
}

func TestStoreFromEnvironment(t *testing.T) {
	dir := storeDir(t)
	ft := makeForkTree(t, dir)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "refs")
	cmd.Env = append(os.Environ(), cliEnv+"=1", "SPORE_STORE="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), ft.warm.String()+" refs/heads/main") {
		t.Fatalf("spore refs with SPORE_STORE: %v\n%s", err, out)
	}
}

// TestConcurrentCommandsOnNewStore starts several commands at once on a
// store that has no server yet: one starts it, and all of them succeed.
func TestConcurrentCommandsOnNewStore(t *testing.T) {
	dir := storeDir(t)
	makeForkTree(t, dir)
	// Wait for the server of makeForkTree to exit (idle timeout 500 ms), so
	// that the commands below race to start a new one.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dir + "/store.sock"); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("store server did not exit after its idle timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
	const n = 6
	results := make(chan cliResult, n)
	for i := 0; i < n; i++ {
		args := []string{"log", "-n", "1"}
		if i%2 == 0 {
			args = []string{"tag", "t" + string(rune('a'+i)), "main"}
		}
		go func() { results <- spore(t, dir, args...) }()
	}
	for i := 0; i < n; i++ {
		r := <-results
		if r.code != 0 || strings.Contains(r.stderr, "Cannot acquire") {
			t.Errorf("concurrent command failed with code %d: %s", r.code, r.stderr)
		}
	}
	out := spore(t, dir, "tag").mustSucceed(t).stdout
	if strings.Count(out, "\n") != n/2 {
		t.Errorf("tags after concurrent commands:\n%s", out)
	}
}
