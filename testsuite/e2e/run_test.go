package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

func TestRunStreamsAndExitStatus(t *testing.T) {
	r := spore(t, "", "run", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 {
		t.Errorf("exit status %d, want 3\nstderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != "out\n" {
		t.Errorf("stdout %q, want %q", r.stdout, "out\n")
	}
	if r.stderr != "err\n" {
		t.Errorf("stderr %q, want %q", r.stderr, "err\n")
	}
}

func TestRunShellString(t *testing.T) {
	r := spore(t, "", "run", "echo $((6 * 7)) in $(pwd)")
	if r.code != 0 || r.stdout != "42 in /\n" {
		t.Errorf("shell string: status %d, stdout %q; want 0 and %q\nstderr:\n%s", r.code, r.stdout, "42 in /\n", r.stderr)
	}
}

func TestRunInteractiveStdin(t *testing.T) {
	r := spore(t, "hello\n", "run", "-i", "--", "/bin/cat")
	if r.code != 0 || r.stdout != "hello\n" {
		t.Errorf("with -i: status %d, stdout %q; want 0 and %q\nstderr:\n%s", r.code, r.stdout, "hello\n", r.stderr)
	}
}

func TestRunWithoutStdinSeesEOF(t *testing.T) {
	// Without -i, cat must see EOF at once even though stdin has data.
	r := spore(t, "ignored\n", "run", "--timeout", "4m", "--", "/bin/cat")
	if r.code != 0 || r.stdout != "" {
		t.Errorf("without -i: status %d, stdout %q; want 0 and no output\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestRunEnvAndWorkdir(t *testing.T) {
	r := spore(t, "", "run", "-e", "GREETING=a,b c", "-w", "/tmp", "--", "/bin/sh", "-c", `echo "$GREETING"; pwd`)
	if r.code != 0 || r.stdout != "a,b c\n/tmp\n" {
		t.Errorf("status %d, stdout %q; want 0 and %q\nstderr:\n%s", r.code, r.stdout, "a,b c\n/tmp\n", r.stderr)
	}
}

func TestRunCPUs(t *testing.T) {
	r := spore(t, "", "run", "--cpus", "2", "--", "/bin/grep", "-c", "^processor", "/proc/cpuinfo")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
		t.Errorf("--cpus 2: status %d, processors %q; want 2\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestRunMemory(t *testing.T) {
	r := spore(t, "", "run", "--memory", "1G", "--", "/bin/grep", "MemTotal", "/proc/meminfo")
	fields := strings.Fields(r.stdout)
	if r.code != 0 || len(fields) != 3 {
		t.Fatalf("--memory 1G: status %d, output %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	kib, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatal(err)
	}
	// MemTotal is RAM less the kernel's own reservations: most of 1 GiB,
	// and never more.
	if kib > 1<<20 || kib < 900<<10 {
		t.Errorf("MemTotal %d KiB, want between 900 MiB and 1 GiB", kib)
	}
}

func TestRunTimeout(t *testing.T) {
	r := spore(t, "", "run", "--timeout", "90s", "--", "/bin/sleep", "1000")
	if r.code != 124 {
		t.Errorf("exit status %d, want 124\nstderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "timed out") {
		t.Errorf("stderr does not say it timed out:\n%s", r.stderr)
	}
}

func TestRunUsageErrors(t *testing.T) {
	cases := [][]string{
		{"run"},
		{"run", "--memory", "lots", "--", "true"},
		{"run", "--cpus", "0", "--", "true"},
		{"run", "--env", "NOEQUALS", "--", "true"},
		{"no-such-command"},
	}
	for _, args := range cases {
		r := spore(t, "", args...)
		if r.code != 2 {
			t.Errorf("spore %q: exit status %d, want 2", args, r.code)
		}
		if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); r.stderr == "" || lines > 1 {
			t.Errorf("spore %q: stderr should be a short error, got:\n%s", args, r.stderr)
		}
	}
}

// TestRunTTY drives an interactive shell through a PTY, as a user at a
// terminal would: type a command, read its output, exit.
func TestRunTTY(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, sporeBinary(t), "run", "-i", "-t", "--", "/bin/sh")
	terminal, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer terminal.Close()

	output := make(chan string, 64)
	go func() {
		reader := bufio.NewReader(terminal)
		var line []byte
		for {
			b, err := reader.ReadByte()
			if err != nil {
				close(output)
				return
			}
			line = append(line, b)
			if b == '\n' || strings.HasSuffix(string(line), "# ") {
				output <- string(line)
				line = nil
			}
		}
	}()

	waitFor := func(want string) string {
		t.Helper()
		var seen strings.Builder
		for {
			select {
			case line, ok := <-output:
				if !ok {
					t.Fatalf("terminal closed before %q appeared; output:\n%s", want, seen.String())
				}
				seen.WriteString(line)
				if strings.Contains(seen.String(), want) {
					return seen.String()
				}
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %q; output:\n%s", want, seen.String())
			}
		}
	}

	waitFor("# ")
	io.WriteString(terminal, "stty size; echo sum=$((40 + 2))\n")
	seen := waitFor("sum=42")
	if !strings.Contains(seen, "30 100") {
		t.Errorf("terminal size not forwarded: want rows 30 cols 100 in:\n%s", seen)
	}
	io.WriteString(terminal, "exit 5\n")

	err = cmd.Wait()
	var exitErr *exec.ExitError
	if code := 0; err != nil {
		if ok := asExitError(err, &exitErr); ok {
			code = exitErr.ExitCode()
		}
		if code != 5 {
			t.Errorf("interactive shell exit: %v, want status 5", err)
		}
	} else {
		t.Error("interactive shell exited 0, want 5")
	}
}

func asExitError(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// rootFS returns a copy of the test root file system, so a test that
// writes to it leaves the original unchanged.
func rootFS(t *testing.T) string {
	t.Helper()
	src := os.Getenv("SPORE_TEST_ROOTFS")
	if src == "" {
		t.Fatal("SPORE_TEST_ROOTFS is not set: run these tests with make e2e")
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "rootfs.ext4")
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestRunRootFSReadOnly(t *testing.T) {
	sporeBinary(t)
	image := rootFS(t)
	r := spore(t, "", "--store", t.TempDir(), "run", "--rootfs", image, "--", "/bin/sh", "-c", "cat /etc/os-release; touch /written")
	if !strings.Contains(r.stdout, "ID=spore-test-rootfs") {
		t.Errorf("root disk not mounted: stdout %q\nstderr:\n%s", r.stdout, r.stderr)
	}
	if r.code == 0 {
		t.Error("touch on a read-only root disk succeeded")
	}
}

// TestRunRootFSWritable checks that a writable root disk takes writes but
// keeps them out of the image: without --capture they are gone after the
// run.
func TestRunRootFSWritable(t *testing.T) {
	sporeBinary(t)
	image := rootFS(t)
	store := t.TempDir()
	r := spore(t, "", "--store", store, "run", "--rootfs", image, "--rootfs-writable", "--", "/bin/sh", "-c", "echo kept > /root/note && sync && cat /root/note")
	if r.code != 0 || r.stdout != "kept\n" {
		t.Fatalf("write to the root disk: status %d, stdout %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = spore(t, "", "--store", store, "run", "--rootfs", image, "--", "/bin/cat", "/root/note")
	if r.code == 0 {
		t.Errorf("second boot reads %q from the image; the first run's writes must stay out of it", r.stdout)
	}
}

func TestRunDebugLogsVMMSetup(t *testing.T) {
	r := spore(t, "", "--debug", "run", "--", "/bin/true")
	if r.code != 0 {
		t.Fatalf("status %d\nstderr:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"guest memory laid out", "virtio device attached", "exits_by_reason", "MMIO"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("--debug output lacks %q:\n%s", want, r.stderr)
		}
	}
}
