// Command testbed-exec runs a linux/arm64 program inside the arm64 KVM
// testbed and exits with the program's status. It is the -exec wrapper for
// go test on x86_64 machines:
//
//	GOARCH=arm64 go test -exec testbed-exec ./vm/...
//
// The program runs as root in the testbed, in a working directory that holds
// a copy of the current directory's testdata folder, if there is one.
// Environment variables named SPORE_* (other than SPORE_TESTBED_*), GODEBUG
// and GOTRACEBACK pass through. SPORE_TESTBED_FILES lists host files or
// directories, separated by colons, that appear at the same absolute paths
// inside the testbed.
//
// Settings: SPORE_TESTBED_TIMEOUT (a Go duration; default: the -test.timeout
// argument plus 3 minutes, or 20 minutes), SPORE_TESTBED_MEMORY (MiB),
// SPORE_TESTBED_CPUS, SPORE_TESTBED_KERNEL (a kernel Image to boot instead of
// Debian's linux-image-cloud-arm64), SPORE_TESTBED_INIT (a prebuilt
// hostinit) and SPORE_TESTBED_VERBOSE=1 (print the kernel's console).
//
// Exit status: the program's own, 124 when the time limit expired and 125
// when the testbed itself failed.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spore-vm/spore/testsuite/testbed"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbed-exec ARM64-BINARY [ARGS...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[2:]))
}

func run(binary string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := configFromEnv(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed-exec: %v\n", err)
		return 2
	}
	cfg.Kernel, err = testbed.FindHostKernel(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed-exec: %v\n", err)
		return testbed.ExitFault
	}
	fmt.Fprintf(os.Stderr, "testbed: host kernel %s %s, %s, %d CPUs, %d MiB, time limit %v\n",
		cfg.Kernel.Package, cfg.Kernel.Version, qemuVersion(), cfg.CPUs, cfg.MemoryMiB, cfg.Timeout)

	payload, err := payloadFromEnv(binary, args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed-exec: %v\n", err)
		return 2
	}

	code, err := testbed.Run(ctx, cfg, payload)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed-exec: %s: %v\n", filepath.Base(binary), err)
	}
	return code
}

func configFromEnv(args []string) (testbed.Config, error) {
	cfg := testbed.Config{
		MemoryMiB: 4096,
		CPUs:      2,
		Init:      os.Getenv("SPORE_TESTBED_INIT"),
		Verbose:   os.Getenv("SPORE_TESTBED_VERBOSE") == "1",
		Timeout:   timeoutFromArgs(args),
	}
	if v := os.Getenv("SPORE_TESTBED_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("SPORE_TESTBED_TIMEOUT=%q is not a positive duration such as 15m", v)
		}
		cfg.Timeout = d
	}
	for _, setting := range []struct {
		name string
		dst  *int
	}{{"SPORE_TESTBED_MEMORY", &cfg.MemoryMiB}, {"SPORE_TESTBED_CPUS", &cfg.CPUs}} {
		v := os.Getenv(setting.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("%s=%q is not a positive integer", setting.name, v)
		}
		*setting.dst = n
	}
	return cfg, nil
}

// timeoutFromArgs returns go test's -test.timeout plus a margin for the
// boot, so the test binary reports its own timeout with stack traces before
// the testbed gives up on it.
func timeoutFromArgs(args []string) time.Duration {
	for _, arg := range args {
		v, ok := strings.CutPrefix(arg, "-test.timeout=")
		if !ok {
			continue
		}
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d + 3*time.Minute
		}
	}
	return 20 * time.Minute
}

func payloadFromEnv(binary string, args []string) (testbed.Payload, error) {
	p := testbed.Payload{
		Binary: binary,
		Args:   args,
		Dir:    "/payload/work",
		Env: []string{
			"PATH=/usr/local/bin:/usr/bin:/bin",
			"HOME=/tmp",
			"TMPDIR=/tmp",
			"SPORE_IN_TESTBED=1",
		},
	}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		passes := strings.HasPrefix(name, "SPORE_") && !strings.HasPrefix(name, "SPORE_TESTBED_")
		if passes || name == "GODEBUG" || name == "GOTRACEBACK" {
			p.Env = append(p.Env, kv)
		}
	}

	if info, err := os.Stat("testdata"); err == nil && info.IsDir() {
		abs, _ := filepath.Abs("testdata")
		p.Files = append(p.Files, testbed.File{HostPath: abs, GuestPath: "/payload/work/testdata"})
	}
	for _, path := range filepath.SplitList(os.Getenv("SPORE_TESTBED_FILES")) {
		if path == "" {
			continue
		}
		if !filepath.IsAbs(path) {
			return p, fmt.Errorf("SPORE_TESTBED_FILES entry %q is not an absolute path", path)
		}
		if _, err := os.Stat(path); err != nil {
			return p, fmt.Errorf("SPORE_TESTBED_FILES entry: %w", err)
		}
		p.Files = append(p.Files, testbed.File{HostPath: path, GuestPath: path})
	}
	return p, nil
}

// qemuVersion returns the first line of qemu-system-aarch64 --version.
func qemuVersion() string {
	out, err := exec.Command("qemu-system-aarch64", "--version").Output()
	if err != nil {
		var notFound *exec.Error
		if errors.As(err, &notFound) {
			return "qemu-system-aarch64 missing"
		}
		return "qemu version unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
