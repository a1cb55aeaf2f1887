package vm

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Guest assets of these tests. make e2e builds testdata/bootinit for arm64
// and passes the gokrazy kernel's path in SPORE_TEST_KERNEL.
const (
	kernelEnv      = "SPORE_TEST_KERNEL"
	bootinitBinary = "testdata/bootinit.arm64"
	bootinitHint   = "run the VM tests with make e2e, which builds it"
)

// requireVMHost skips on hosts that cannot run arm64 guests, except in the
// testbed, where a missing capability is a failure.
func requireVMHost(t *testing.T) {
	t.Helper()
	if os.Getenv("SPORE_IN_TESTBED") != "" {
		return
	}
	if p := ProbeHost(); !p.Usable {
		t.Skipf("this host cannot run arm64 guests: %s", p.Reason)
	}
}

// syncBuffer is a bytes.Buffer safe for the UART writing from vCPU threads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bootAssets returns the kernel Image and an initramfs with bootinit as
// /init.
func bootAssets(t *testing.T) (kernel, initrd []byte) {
	t.Helper()
	path := os.Getenv(kernelEnv)
	if path == "" {
		t.Fatalf("%s is not set: %s", kernelEnv, bootinitHint)
	}
	kernel, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	init, err := os.ReadFile(bootinitBinary)
	if err != nil {
		t.Fatalf("read %s: %v; %s", bootinitBinary, err, bootinitHint)
	}

	var archive bytes.Buffer
	w := cpio.NewWriter(&archive)
	for _, dir := range []string{"dev", "proc"} {
		w.WriteHeader(&cpio.Header{Name: dir, Mode: cpio.TypeDir | 0o755})
	}
	w.WriteHeader(&cpio.Header{Name: "init", Mode: cpio.TypeReg | 0o755, Size: int64(len(init))})
	w.Write(init)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return kernel, archive.Bytes()
}

// TestBootLinuxToInit boots the gokrazy kernel with two vCPUs and checks
// that its init sees both CPUs and the configured RAM, then powers off.
func TestBootLinuxToInit(t *testing.T) {
	requireVMHost(t)
	kernel, initrd := bootAssets(t)

	var console syncBuffer
	m, err := New(Config{
		Kernel:      kernel,
		Initrd:      initrd,
		Cmdline:     "console=ttyAMA0 panic=-1 quiet rdinit=/init initcall_blacklist=sensors_nct6683_init",
		MemoryBytes: 256 << 20,
		VCPUs:       2,
		Console:     &console,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reason, err := m.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v\nconsole:\n%s", err, console.String())
	}
	if reason != ExitPowerOff {
		t.Fatalf("VM stopped with %v, want power off\nconsole:\n%s", reason, console.String())
	}

	out := console.String()
	if !strings.Contains(out, "spore-bootinit: cpus=2") {
		t.Errorf("init did not report 2 CPUs:\n%s", out)
	}
	// MemTotal is RAM less what the kernel reserved for itself.
	if !strings.Contains(out, "MemTotal:") {
		t.Errorf("init did not report MemTotal:\n%s", out)
	}
}
