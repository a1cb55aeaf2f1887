package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/creack/pty"
	"github.com/spore-vm/spore/testsuite/registry"
	"github.com/spore-vm/spore/transport"
)

func TestPushPullChildCommands(t *testing.T) {
	reg := registry.Start(t)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	src := storeDir(t)
	ft := makeForkTree(t, src)
	dest := reg.Reference("spores/warm") + ":warm"

	spore(t, src, "tag", "warm", "main").mustSucceed(t)
	res := spore(t, src, "--json", "push", "warm", dest, "--children").mustSucceed(t)
	var pushed transport.PushResult
	if err := json.Unmarshal([]byte(res.stdout), &pushed); err != nil {
		t.Fatalf("push --json: %v\n%s", err, res.stdout)
	}
	if pushed.Commit != ft.warm || len(pushed.Children) != 3 || pushed.Total.Blobs == 0 {
		t.Fatalf("push summary = %+v", pushed)
	}
	if res.stderr != "" {
		t.Errorf("push printed on a pipe: %q", res.stderr)
	}

	again := spore(t, src, "--json", "push", "warm", dest, "--children").mustSucceed(t)
	var second transport.PushResult
	if err := json.Unmarshal([]byte(again.stdout), &second); err != nil {
		t.Fatal(err)
	}
	if second.Total.Blobs != 0 || second.Manifest != pushed.Manifest {
		t.Errorf("second push sent %d blobs, manifest %s (first %s)", second.Total.Blobs, second.Manifest, pushed.Manifest)
	}

	dst := storeDir(t)
	out := spore(t, dst, "pull", reg.Reference("spores/warm")+":warm", "--child", "2").mustSucceed(t).stdout
	if !strings.Contains(out, ft.children[1].String()) || !strings.Contains(out, "refs/forks/warm/2") {
		t.Errorf("pull --child output:\n%s", out)
	}
	refsOut := spore(t, dst, "refs").mustSucceed(t).stdout
	if strings.TrimSpace(refsOut) != ft.children[1].String()+" refs/forks/warm/2" {
		t.Errorf("refs after pull --child:\n%s", refsOut)
	}
	spore(t, dst, "fsck").mustSucceed(t)

	all := storeDir(t)
	res = spore(t, all, "--json", "pull", reg.Reference("spores/warm")+":warm", "--children").mustSucceed(t)
	var tree transport.PullResult
	if err := json.Unmarshal([]byte(res.stdout), &tree); err != nil {
		t.Fatal(err)
	}
	if tree.Commit != ft.warm || len(tree.Children) != 3 || tree.Children[2].Ref != "refs/forks/warm/3" || tree.Children[2].Commit != ft.children[2] {
		t.Errorf("pull --children summary = %+v", tree)
	}

	byDigest := reg.Reference("spores/warm") + "@" + pushed.Manifest.String()
	out = spore(t, dst, "pull", byDigest, "--ref", "warm").mustSucceed(t).stdout
	if !strings.Contains(out, "refs/heads/warm") {
		t.Errorf("pull --ref output:\n%s", out)
	}
}

func TestPullErrorMessages(t *testing.T) {
	reg := registry.Start(t)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	src := storeDir(t)
	makeForkTree(t, src)
	spore(t, src, "push", "main", reg.Reference("spores/errors")+":v1").mustSucceed(t)
	dst := storeDir(t)

	digest := "sha256:" + strings.Repeat("ab", 32)
	cases := []struct {
		name, source, want string
	}{
		{"unknown tag", reg.Reference("spores/errors") + ":v2", `"v2" not found`},
		{"wrong digest", reg.Reference("spores/errors") + "@" + digest, digest + `" not found`},
		{"unknown repository", reg.Reference("spores/none") + ":v1", "not found"},
		{"unreachable registry", "127.0.0.1:" + strconv.Itoa(closedPort(t)) + "/spores/errors:v1", "connection refused"},
		{"no tag", reg.Reference("spores/errors"), "names no tag or digest"},
	}
	for _, tc := range cases {
		res := spore(t, dst, "pull", tc.source)
		if res.code == 0 {
			t.Errorf("%s: pull succeeded", tc.name)
			continue
		}
		if !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%s: stderr %q does not contain %q", tc.name, res.stderr, tc.want)
		}
	}
	if refs := spore(t, dst, "refs").mustSucceed(t).stdout; refs != "" {
		t.Errorf("failed pulls left refs:\n%s", refs)
	}
}

func TestPackUnpackCommands(t *testing.T) {
	src := storeDir(t)
	ft := makeForkTree(t, src)
	bundle := filepath.Join(t.TempDir(), "warm.tar")
	spore(t, src, "tag", "warm", "main").mustSucceed(t)
	spore(t, src, "pack", "warm", "--children", "--out", bundle).mustSucceed(t)

	dst := storeDir(t)
	spore(t, dst, "unpack", bundle).mustSucceed(t)
	// The packed tag and the fork children come back; refs/heads/main
	// was not packed.
	want := spore(t, src, "refs", "refs/forks/").mustSucceed(t).stdout + spore(t, src, "refs", "refs/tags/").mustSucceed(t).stdout
	got := spore(t, dst, "refs", "refs/").mustSucceed(t).stdout
	if got != want {
		t.Errorf("refs after unpack:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(got, ft.children[2].String()+" refs/forks/warm/3") {
		t.Errorf("unpacked refs lack child 3:\n%s", got)
	}
	spore(t, dst, "fsck").mustSucceed(t)
}

// closedPort returns a loopback port that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestPushProgressOnTerminal(t *testing.T) {
	reg := registry.Start(t)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	src := storeDir(t)
	makeForkTree(t, src)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--store", src, "push", "main", reg.Reference("spores/tty")+":v1")
	cmd.Env = append(os.Environ(), cliEnv+"=1", "SPORE_STORE_IDLE_TIMEOUT=500ms")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var progress bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&progress, ptmx)
		close(copied)
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, progress.String())
	}
	<-copied

	if !strings.Contains(progress.String(), "layer (") || !strings.Contains(progress.String(), "objects)") {
		t.Errorf("no layer progress on the terminal:\n%q", progress.String())
	}
	if !strings.Contains(stdout.String(), "pushed ") {
		t.Errorf("summary missing from stdout: %q", stdout.String())
	}
}
