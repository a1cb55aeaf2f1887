package testbed

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Exit statuses Run reports for failures of the testbed itself, chosen to
// match timeout(1) and to stay clear of usual test exit codes.
const (
	// ExitTimeout means the payload did not finish within Config.Timeout.
	ExitTimeout = 124
	// ExitFault means the testbed failed: QEMU could not start, the kernel
	// panicked or the payload's exit status never arrived.
	ExitFault = 125
)

// QEMUInstallHint is the Debian command that installs the emulator.
const QEMUInstallHint = "install it with: apt-get install qemu-system-arm"

// Config describes one testbed boot.
type Config struct {
	// QEMU is the qemu-system-aarch64 binary; empty means look it up in PATH.
	QEMU string
	// Kernel is the host kernel to boot.
	Kernel HostKernel
	// Init is a linux/arm64 build of hostinit; empty means build it with the
	// go command from this module's source.
	Init string
	// MemoryMiB is the testbed's RAM in MiB; 0 means 4096.
	MemoryMiB int
	// CPUs is the number of emulated cores; 0 means 2.
	CPUs int
	// Timeout bounds the whole boot; 0 means 20 minutes.
	Timeout time.Duration
	// Stdout receives the payload's output; nil means os.Stdout.
	Stdout io.Writer
	// Log receives the kernel's boot output on a failure, and always when
	// Verbose is set; nil means os.Stderr.
	Log io.Writer
	// Verbose copies every kernel line to Log as it arrives.
	Verbose bool
}

// Payload is the program the testbed runs.
type Payload struct {
	// Binary is the host path of a linux/arm64 executable.
	Binary string
	Args   []string
	// Env is the payload's whole environment, as KEY=VALUE.
	Env []string
	// Dir is the working directory inside the testbed; empty means
	// /payload/work.
	Dir string
	// Files are copied into the testbed before the payload starts.
	Files []File
}

// File is a host file or directory tree placed at GuestPath in the
// testbed.
type File struct {
	HostPath  string
	GuestPath string
}

// Fault is a failure of the testbed rather than of the payload.
type Fault struct {
	// Reason describes the failure in a sentence.
	Reason string
	// KernelLog is the tail of the testbed kernel's output.
	KernelLog string
}

func (f *Fault) Error() string { return "testbed fault: " + f.Reason }

// ErrTimeout is returned, wrapped, when the payload outlived Config.Timeout.
var ErrTimeout = errors.New("testbed timed out")

// payloadSpec is what hostinit reads from /payload/spec.json.
type payloadSpec struct {
	Nonce    string   `json:"nonce"`
	Binary   string   `json:"binary"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Dir      string   `json:"dir"`
	UnixTime int64    `json:"unix_time"`
}

// Run boots the testbed, runs the payload and returns its exit status. The
// error is nil when the payload ran to completion, whatever its status. When
// the testbed failed, the error wraps ErrTimeout or is a *Fault, and the
// status is ExitTimeout or ExitFault.
func Run(ctx context.Context, cfg Config, p Payload) (int, error) {
	cfg = cfg.withDefaults()

	qemu, err := findQEMU(cfg.QEMU)
	if err != nil {
		return ExitFault, &Fault{Reason: err.Error()}
	}

	work, err := os.MkdirTemp("", "spore-testbed-")
	if err != nil {
		return ExitFault, &Fault{Reason: err.Error()}
	}
	defer os.RemoveAll(work)

	initPath := cfg.Init
	if initPath == "" {
		initPath = filepath.Join(work, "hostinit")
		if err := BuildHostInit(ctx, initPath); err != nil {
			return ExitFault, &Fault{Reason: err.Error()}
		}
	}

	nonce := newNonce()
	archive := filepath.Join(work, "initramfs.cpio")
	if err := writeInitramfs(archive, initPath, nonce, p); err != nil {
		return ExitFault, &Fault{Reason: fmt.Sprintf("build initramfs: %v", err)}
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	return boot(ctx, cfg, qemu, archive, nonce)
}

func (cfg Config) withDefaults() Config {
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 4096
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Minute
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	return cfg
}

func findQEMU(configured string) (string, error) {
	name := configured
	if name == "" {
		name = "qemu-system-aarch64"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: %s", name, QEMUInstallHint)
	}
	return path, nil
}

// BuildHostInit compiles the hostinit command for linux/arm64 into out. The
// go command must run inside this module, which is where tests run.
func BuildHostInit(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/spore-vm/spore/testsuite/testbed/hostinit")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build hostinit for linux/arm64: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func newNonce() string {
	var b [8]byte
	rand.Read(b[:])
	return "spore-testbed-" + hex.EncodeToString(b[:])
}

// writeInitramfs packs hostinit as /init, the payload as /payload/bin, its
// spec and its files.
func writeInitramfs(out, initPath, nonce string, p Payload) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := bufio.NewWriterSize(f, 1<<20)
	a := newInitramfs(buf)

	if err := a.addFile("/init", initPath); err != nil {
		return fmt.Errorf("add hostinit: %w", err)
	}
	if err := a.addFile("/payload/bin", p.Binary); err != nil {
		return fmt.Errorf("add payload: %w", err)
	}
	if err := a.mkdirAll("/payload/work"); err != nil {
		return err
	}
	for _, file := range p.Files {
		if !filepath.IsAbs(file.GuestPath) {
			return fmt.Errorf("guest path %q of %s is not absolute", file.GuestPath, file.HostPath)
		}
		if err := a.addTree(file.GuestPath, file.HostPath); err != nil {
			return fmt.Errorf("add %s: %w", file.HostPath, err)
		}
	}

	dir := p.Dir
	if dir == "" {
		dir = "/payload/work"
	}
	spec, err := json.Marshal(payloadSpec{
		Nonce:    nonce,
		Binary:   "/payload/bin",
		Args:     p.Args,
		Env:      p.Env,
		Dir:      dir,
		UnixTime: time.Now().Unix(),
	})
	if err != nil {
		return err
	}
	if err := a.addBytes("/payload/spec.json", spec, 0o644); err != nil {
		return err
	}

	if err := a.Close(); err != nil {
		return err
	}
	if err := buf.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// qemuArgs returns the command line of the testbed. neoverse-n1 rather than
// max: max emulates pointer authentication slowly and exposes 52-bit
// addressing, which the 6.1 host kernel mishandles for nested guests.
func qemuArgs(cfg Config, archive string) []string {
	return []string{
		"-M", "virt,virtualization=on,gic-version=3",
		"-cpu", "neoverse-n1",
		"-accel", "tcg,thread=multi",
		"-smp", strconv.Itoa(cfg.CPUs),
		"-m", strconv.Itoa(cfg.MemoryMiB),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-monitor", "none",
		"-serial", "stdio",
		"-nic", "none",
		"-no-reboot",
		"-kernel", cfg.Kernel.Path,
		"-initrd", archive,
		// loglevel=4 prints kernel errors and worse, which the harness
		// shows; quiet alone would also print them, this keeps it explicit.
		"-append", "console=ttyAMA0 rdinit=/init panic=-1 quiet loglevel=4",
	}
}

// boot runs QEMU and splits its serial output into kernel log and payload
// output by the nonce markers that hostinit prints.
func boot(ctx context.Context, cfg Config, qemu, archive, nonce string) (int, error) {
	cmd := exec.Command(qemu, qemuArgs(cfg, archive)...)
	cmd.Stdin = nil
	var qemuErr bytes.Buffer
	cmd.Stderr = &qemuErr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return ExitFault, &Fault{Reason: err.Error()}
	}
	// Own process group, so a timeout kills QEMU and nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return ExitFault, &Fault{Reason: fmt.Sprintf("start %s: %v", qemu, err)}
	}

	parsed := make(chan scanResult, 1)
	go func() { parsed <- scanConsole(stdout, cfg, nonce) }()

	var res scanResult
	select {
	case res = <-parsed:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		res = <-parsed
		cmd.Wait()
		reason := fmt.Sprintf("the payload did not finish within %v; QEMU (pid %d) was killed", cfg.Timeout, cmd.Process.Pid)
		if res.kernelWarned {
			reason += "; the testbed kernel printed warnings, which points at a testbed fault rather than a test failure"
		}
		cfg.Log.Write([]byte(res.kernelTail()))
		return ExitTimeout, fmt.Errorf("%w: %s", ErrTimeout, reason)
	}

	waitErr := cmd.Wait()
	if res.exitSeen {
		return res.exitCode, nil
	}

	reason := "the payload's exit status never arrived"
	switch {
	case !res.started:
		reason = "the testbed kernel did not reach the payload"
	case waitErr != nil:
		reason = fmt.Sprintf("QEMU failed while the payload ran: %v", waitErr)
	}
	if msg := strings.TrimSpace(qemuErr.String()); msg != "" {
		reason += "; QEMU said: " + msg
	}
	tail := res.kernelTail()
	cfg.Log.Write([]byte(tail))
	return ExitFault, &Fault{Reason: reason, KernelLog: tail}
}

// scanResult contains the markers, exit status and kernel lines that
// scanConsole found in the serial output.
type scanResult struct {
	// heldEmptyLine is an empty payload line not yet written: hostinit
	// prints a newline before the exit marker, which must not reach the
	// payload's output when the payload already ended its last line.
	heldEmptyLine bool
	started       bool
	exitSeen      bool
	exitCode      int
	kernelWarned  bool
	kernelLines   []string
}

// maxKernelLines bounds the kernel log kept for error reports.
const maxKernelLines = 200

func (r *scanResult) kernelTail() string {
	if len(r.kernelLines) == 0 {
		return ""
	}
	return "testbed kernel log (last lines):\n  " + strings.Join(r.kernelLines, "\n  ") + "\n"
}

func (r *scanResult) keepKernelLine(line string) {
	if len(r.kernelLines) == maxKernelLines {
		r.kernelLines = r.kernelLines[1:]
	}
	r.kernelLines = append(r.kernelLines, line)
}

// scanConsole reads the serial output to EOF. Lines before the start marker
// are kernel log. After it, every line but the exit marker goes to
// Config.Stdout, and lines with a printk timestamp are kept as kernel log
// too, because kernel warnings interleave with the payload's output.
func scanConsole(r io.Reader, cfg Config, nonce string) scanResult {
	var res scanResult
	startMarker := nonce + ":start"
	exitPrefix := nonce + ":exit:"

	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			res.handleLine(line, cfg, startMarker, exitPrefix)
		}
		if err != nil {
			return res
		}
	}
}

func (r *scanResult) handleLine(line string, cfg Config, startMarker, exitPrefix string) {
	trimmed := strings.TrimRight(line, "\r\n")
	switch {
	case !r.started:
		if strings.HasSuffix(trimmed, startMarker) {
			r.started = true
			return
		}
		r.noteKernelLine(trimmed, cfg)
	case r.exitSeen:
		r.noteKernelLine(trimmed, cfg)
	case strings.Contains(trimmed, exitPrefix):
		// A partial last line of the payload precedes the marker.
		partial := trimmed[:strings.Index(trimmed, exitPrefix)]
		code, err := strconv.Atoi(trimmed[len(partial)+len(exitPrefix):])
		if err == nil {
			r.exitSeen, r.exitCode = true, code
		}
		r.heldEmptyLine = false
		if partial != "" {
			cfg.Stdout.Write([]byte(partial))
		}
	case trimmed == "":
		r.flushHeldLine(cfg)
		r.heldEmptyLine = true
	case isKernelLine(trimmed):
		r.noteKernelLine(trimmed, cfg)
		r.flushHeldLine(cfg)
		cfg.Stdout.Write([]byte(line))
	default:
		r.flushHeldLine(cfg)
		cfg.Stdout.Write([]byte(line))
	}
}

func (r *scanResult) flushHeldLine(cfg Config) {
	if r.heldEmptyLine {
		cfg.Stdout.Write([]byte("\n"))
		r.heldEmptyLine = false
	}
}

func (r *scanResult) noteKernelLine(line string, cfg Config) {
	if line == "" {
		return
	}
	r.keepKernelLine(line)
	if strings.Contains(line, "WARNING:") || strings.Contains(line, "No vcpu context") || strings.Contains(line, "BUG:") {
		r.kernelWarned = true
	}
	if cfg.Verbose {
		fmt.Fprintf(cfg.Log, "testbed kernel: %s\n", line)
	}
}

// isKernelLine reports whether a console line is a printk line, which
// starts with a bracketed timestamp such as "[   12.345678] ".
func isKernelLine(line string) bool {
	if !strings.HasPrefix(line, "[") {
		return false
	}
	end := strings.IndexByte(line, ']')
	if end < 2 {
		return false
	}
	_, err := strconv.ParseFloat(strings.TrimSpace(line[1:end]), 64)
	return err == nil
}
