package testbed

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScanConsoleSplitsKernelAndPayload(t *testing.T) {
	const nonce = "spore-testbed-0123"
	console := strings.Join([]string{
		"[    0.000000] Booting Linux on physical CPU 0x0",
		"",
		nonce + ":start",
		"first payload line",
		"[   12.500000] kvm: some warning WARNING: at arch/arm64",
		"",
		"after an empty line",
		"partial" + nonce + ":exit:3",
		"[   13.000000] reboot: Power down",
	}, "\r\n") + "\r\n"

	var out, log bytes.Buffer
	res := scanConsole(strings.NewReader(console), Config{Stdout: &out, Log: &log}, nonce)

	if !res.started || !res.exitSeen || res.exitCode != 3 {
		t.Fatalf("started=%v exitSeen=%v code=%d, want true true 3", res.started, res.exitSeen, res.exitCode)
	}
	want := "first payload line\r\n" +
		"[   12.500000] kvm: some warning WARNING: at arch/arm64\r\n" +
		"\n" +
		"after an empty line\r\n" +
		"partial"
	if got := out.String(); got != want {
		t.Errorf("payload output\n%q\nwant\n%q", got, want)
	}
	if !res.kernelWarned {
		t.Error("kernel warning during the payload not noticed")
	}
	if tail := res.kernelTail(); !strings.Contains(tail, "Booting Linux") || !strings.Contains(tail, "Power down") {
		t.Errorf("kernel log tail misses boot or shutdown lines:\n%s", tail)
	}
}

func TestIsKernelLine(t *testing.T) {
	for line, want := range map[string]bool{
		"[    1.234567] virtio: hello": true,
		"[ok] test passed":             false,
		"plain":                        false,
		"[]":                           false,
	} {
		if got := isKernelLine(line); got != want {
			t.Errorf("isKernelLine(%q) = %v, want %v", line, got, want)
		}
	}
}

// requireTestbed skips when QEMU is missing on a developer machine. In CI
// (CI=true) the testbed is installed by .ci/run, so a missing QEMU fails.
func requireTestbed(t *testing.T) HostKernel {
	t.Helper()
	if testing.Short() {
		t.Skip("boots the testbed; skipped with -short")
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("qemu-system-aarch64 missing: %s", QEMUInstallHint)
		}
		t.Fatalf("qemu-system-aarch64 missing in CI: %s", QEMUInstallHint)
	}
	k, err := FindHostKernel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host kernel %s", k)
	return k
}

// buildPayload compiles testdata/payload for linux/arm64.
func buildPayload(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "payload")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/payload")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build payload: %v\n%s", err, msg)
	}
	return out
}

// TestRunPayloadInTestbed boots the real testbed once and checks arguments,
// environment, files, merged output and the exit status.
func TestRunPayloadInTestbed(t *testing.T) {
	kernel := requireTestbed(t)
	payload := buildPayload(t)

	extra := filepath.Join(t.TempDir(), "file.txt")
	if err := os.WriteFile(extra, []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}

	var out, log bytes.Buffer
	cfg := Config{Kernel: kernel, MemoryMiB: 512, Timeout: 5 * time.Minute, Stdout: &out, Log: &log}
	code, err := Run(context.Background(), cfg, Payload{
		Binary: payload,
		Args:   []string{"7", "two words"},
		Env:    []string{"TESTBED_VALUE=forty-two"},
		Files: []File{
			{HostPath: extra, GuestPath: "/extra/file.txt"},
			{HostPath: extra, GuestPath: "/tmp/placed/file.txt"},
		},
	})
	if err != nil {
		t.Fatalf("Run: %v\nkernel log:\n%s", err, log.String())
	}
	if code != 7 {
		t.Errorf("exit status %d, want 7", code)
	}
	for _, want := range []string{`args=["7" "two words"]`, "TESTBED_VALUE=forty-two", "/extra/file.txt=from the host", "/tmp/placed/file.txt=from the host", "to stderr", "partial line"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunTimesOut(t *testing.T) {
	kernel := requireTestbed(t)
	payload := buildPayload(t)

	var out, log bytes.Buffer
	cfg := Config{Kernel: kernel, MemoryMiB: 512, Timeout: 20 * time.Second, Stdout: &out, Log: &log}
	code, err := Run(context.Background(), cfg, Payload{Binary: payload, Args: []string{"hang"}})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run of a hanging payload: code %d, err %v, want ErrTimeout", code, err)
	}
	if code != ExitTimeout {
		t.Errorf("exit status %d, want %d", code, ExitTimeout)
	}
	if !strings.Contains(out.String(), "hanging") {
		t.Errorf("output before the timeout lost: %q", out.String())
	}
}

func TestRunMissingQEMU(t *testing.T) {
	cfg := Config{QEMU: "/nonexistent/qemu-system-aarch64"}
	code, err := Run(context.Background(), cfg, Payload{Binary: "/bin/true"})
	var fault *Fault
	if !errors.As(err, &fault) || code != ExitFault {
		t.Fatalf("Run with missing QEMU: code %d, err %v, want a Fault and %d", code, err, ExitFault)
	}
	if !strings.Contains(fault.Reason, "apt-get install qemu-system-arm") {
		t.Errorf("fault %q does not say how to install QEMU", fault.Reason)
	}
}
