// Command hostinit is PID 1 of the arm64 testbed host. It mounts the
// pseudo filesystems, brings up loopback, runs the payload described by
// /payload/spec.json, reports its exit status on the console between marker
// lines and powers the testbed off.
//
// It is built for linux/arm64 by the testbed package and packed into the
// initramfs as /init; it is not useful on its own.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spec mirrors testbed.payloadSpec; the two are kept in sync by the JSON
// field names.
type Spec struct {
	Nonce  string   `json:"nonce"`
	Binary string   `json:"binary"`
	Args   []string `json:"args"`
	Env    []string `json:"env"`
	Dir    string   `json:"dir"`
	// UnixTime is the host's wall clock when the initramfs was built, so
	// that the payload does not start in 1970 when the emulated RTC is
	// missing.
	UnixTime int64 `json:"unix_time"`
}

const specPath = "/payload/spec.json"

func main() {
	code := run()
	powerOff(code)
}

func run() int {
	if err := mountPseudoFilesystems(); err != nil {
		fatal("mount: %v", err)
	}
	if err := attachConsole(); err != nil {
		fatal("console: %v", err)
	}
	if err := bringUpLoopback(); err != nil {
		fatal("loopback: %v", err)
	}

	spec, err := readSpec()
	if err != nil {
		fatal("%v", err)
	}
	setClock(spec.UnixTime)

	fmt.Printf("\n%s:start\n", spec.Nonce)
	code := runPayload(spec)
	unix.Sync()
	fmt.Printf("\n%s:exit:%d\n", spec.Nonce, code)
	return code
}

// mountPseudoFilesystems mounts what a test binary expects of a Linux host.
// devtmpfs provides /dev/kvm and /dev/userfaultfd. /tmp and /run stay on
// the initramfs, which is already in memory, because a tmpfs mounted over
// them would hide payload files placed there.
func mountPseudoFilesystems() error {
	for _, dir := range []string{"/tmp", "/run"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod("/tmp", 0o777|os.ModeSticky); err != nil {
		return err
	}

	mounts := []struct {
		source, target, fstype, data string
	}{
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devpts", "/dev/pts", "devpts", "ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.source, m.target, m.fstype, 0, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// attachConsole makes /dev/console fds 0, 1 and 2. The initramfs has no
// /dev/console node, so the kernel started init without them. The console
// is switched to raw mode so output bytes reach the host unchanged.
func attachConsole() error {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	for target := 0; target <= 2; target++ {
		if err := unix.Dup2(fd, target); err != nil {
			return err
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}

	t, err := unix.IoctlGetTermios(1, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Iflag &^= unix.ICRNL | unix.IXON
	return unix.IoctlSetTermios(1, unix.TCSETS, t)
}

// bringUpLoopback sets IFF_UP on lo, so tests can serve on 127.0.0.1.
func bringUpLoopback() error {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(sock)

	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(sock, unix.SIOCSIFFLAGS, ifr)
}

func readSpec() (Spec, error) {
	var spec Spec
	data, err := os.ReadFile(specPath)
	if err != nil {
		return spec, fmt.Errorf("read payload spec: %w", err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return spec, fmt.Errorf("decode %s: %w", specPath, err)
	}
	if spec.Nonce == "" || spec.Binary == "" {
		return spec, fmt.Errorf("%s lacks nonce or binary", specPath)
	}
	return spec, nil
}

// setClock moves the clock forward to the host's time at build when the
// testbed's clock is behind it.
func setClock(unixTime int64) {
	if unixTime <= 0 || time.Now().Unix() >= unixTime {
		return
	}
	tv := unix.NsecToTimeval(unixTime * int64(time.Second))
	if err := unix.Settimeofday(&tv); err != nil {
		fmt.Fprintf(os.Stderr, "hostinit: set clock: %v\n", err)
	}
}

// runPayload runs the payload and returns its exit status, 128+signal when
// a signal ended it, or 127 when it could not start.
func runPayload(spec Spec) int {
	cmd := exec.Command(spec.Binary, spec.Args...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.Stdin = nil
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stdout

	err := cmd.Run()
	if err == nil {
		return 0
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exitErr.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "hostinit: start payload %s: %v\n", spec.Binary, err)
	return 127
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "hostinit: "+format+"\n", args...)
	powerOff(1)
}

// powerOff syncs and powers the testbed off; QEMU exits when it does. As
// PID 1, returning would panic the kernel instead.
func powerOff(code int) {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "hostinit: power off: %v (exit status %d)\n", err, code)
	}
	select {}
}
