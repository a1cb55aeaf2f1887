package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Window is the maximum number of unacknowledged bytes a sender keeps per
// stream. A Server stops reading a process's output while its stream holds
// a full window, so a stalled host slows the process down instead of
// growing guest memory.
const Window = 256 << 10

// DefaultPath is the PATH of a session whose request sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outStream keeps one output stream's unacknowledged bytes. All fields are
// guarded by Server.mu.
type outStream struct {
	buf   []byte // bytes [start, start+len(buf)) of the stream
	start uint64 // first byte not yet acknowledged
	sent  uint64 // next byte to send on the current connection
	eof   bool   // the process side is closed, so end() is final
}

func (o *outStream) end() uint64 { return o.start + uint64(len(o.buf)) }

// ack drops bytes before off. Offsets outside [start, end] are ignored.
func (o *outStream) ack(off uint64) {
	if off <= o.start || off > o.end() {
		return
	}
	// Reslicing drops the bytes without a copy. The next append that
	// outgrows the array copies only the bytes still kept.
	n := off - o.start
	o.buf = o.buf[n:]
	o.start = off
	if o.sent < off {
		o.sent = off
	}
}

// session is one process run by a Server. Fields after the first group
// are guarded by Server.mu.
type session struct {
	id    uint32
	tty   bool
	pid   int
	cmd   *exec.Cmd
	ptmx  *os.File // PTY master, or nil
	stdin *os.File // write end of the stdin pipe, the PTY master, or nil

	out      [3]*outStream // indexed by Stream; [Stdin] is unused
	attached bool          // output may be sent on the current connection
	exited   bool          // the process was reaped and all output read
	reaped   bool
	status   ExitStatus
	exitedAt time.Time
	exitSent bool // Exit was sent on the current connection

	stdinQueue  []byte // received stdin bytes not yet written
	stdinOff    uint64 // stdin bytes written to the process
	stdinRecv   uint64 // stdinOff + len(stdinQueue)
	stdinEnd    int64  // offset at which to close stdin, or -1
	stdinClosed bool
	rewindAt    uint64 // stdin offset of the last Rewind sent, to send one per gap
	stdinWake   chan struct{}
}

func (s *session) info() SessionInfo {
	return SessionInfo{
		ID:          s.id,
		PID:         uint32(s.pid),
		TTY:         s.tty,
		Exited:      s.exited,
		Status:      s.status,
		StdinOffset: s.stdinOff,
		StdinClosed: s.stdinClosed,
		Stdout:      StreamPos{Start: s.out[Stdout].start, End: s.out[Stdout].end()},
		Stderr:      StreamPos{Start: s.out[Stderr].start, End: s.out[Stderr].end()},
	}
}

// buildCmd turns an Exec request into an exec.Cmd with its environment,
// working directory and resolved program path. stdio is set by the caller.
func buildCmd(req *Exec, baseEnv []string) (*exec.Cmd, error) {
	argv := req.Argv
	if req.Shell != "" {
		argv = []string{"/bin/sh", "-lc", req.Shell}
	}
	env := mergeEnv(baseEnv, req.Env)
	if req.TTY && lookupEnv(env, "TERM") == "" {
		env = append(env, "TERM=xterm")
	}
	path, err := lookPath(argv[0], lookupEnv(env, "PATH"))
	if err != nil {
		return nil, err
	}
	dir := req.Dir
	if dir == "" {
		dir = "/"
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Dir: dir}
	return cmd, nil
}

// mergeEnv returns base with the entries of extra added; an entry of extra
// replaces a base entry with the same key.
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	seen := make(map[string]bool)
	for i := len(extra) - 1; i >= 0; i-- {
		k, _, _ := strings.Cut(extra[i], "=")
		if !seen[k] {
			seen[k] = true
			out = append(out, extra[i])
		}
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !seen[k] {
			seen[k] = true
			out = append(out, kv)
		}
	}
	return out
}

func lookupEnv(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath resolves a program name in the session's PATH, not the PATH of
// the agent process.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	if path == "" {
		path = DefaultPath
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH %q", name, path)
}

// startSession starts the process of req through the reaper. It returns the
// session and the readers of its output streams, indexed by Stream.
func startSession(req *Exec, baseEnv []string, r *Reaper) (*session, [3]*os.File, <-chan unix.WaitStatus, error) {
	var readers [3]*os.File
	cmd, err := buildCmd(req, baseEnv)
	if err != nil {
		return nil, readers, nil, err
	}
	s := &session{id: req.Session, tty: req.TTY, cmd: cmd, stdinEnd: -1, stdinWake: make(chan struct{}, 1)}
	for i := range s.out {
		s.out[i] = &outStream{}
	}

	var childEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			if f != nil {
				f.Close()
			}
		}
	}
	if req.TTY {
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, readers, nil, fmt.Errorf("open PTY: %w", err)
		}
		if req.Rows != 0 || req.Cols != 0 {
			if err := pty.Setsize(ptmx, &pty.Winsize{Rows: req.Rows, Cols: req.Cols}); err != nil {
				closeAll([]*os.File{ptmx, tty})
				return nil, readers, nil, fmt.Errorf("set PTY size %dx%d: %w", req.Cols, req.Rows, err)
			}
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		childEnds = []*os.File{tty}
		s.ptmx = ptmx
		if req.Stdin {
			s.stdin = ptmx
		}
		readers[Stdout] = ptmx
	} else {
		var parentEnds []*os.File
		for _, st := range []Stream{Stdout, Stderr} {
			pr, pw, err := os.Pipe()
			if err != nil {
				closeAll(parentEnds)
				closeAll(childEnds)
				return nil, readers, nil, fmt.Errorf("create %s pipe: %w", st, err)
			}
			parentEnds = append(parentEnds, pr)
			childEnds = append(childEnds, pw)
			readers[st] = pr
		}
		cmd.Stdout, cmd.Stderr = childEnds[0], childEnds[1]
		if req.Stdin {
			pr, pw, err := os.Pipe()
			if err != nil {
				closeAll(parentEnds)
				closeAll(childEnds)
				return nil, readers, nil, fmt.Errorf("create stdin pipe: %w", err)
			}
			cmd.Stdin = pr
			childEnds = append(childEnds, pr)
			s.stdin = pw
		}
		// A process group of its own keeps a signal for the agent (such as
		// a console interrupt) away from the session.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}

	done, err := r.Start(cmd)
	closeAll(childEnds)
	if err != nil {
		closeAll(readers[:])
		if s.stdin != nil && s.stdin != s.ptmx {
			s.stdin.Close()
		}
		if s.ptmx != nil {
			s.ptmx.Close()
		}
		return nil, [3]*os.File{}, nil, err
	}
	if !req.Stdin {
		s.stdinClosed = true
	}
	return s, readers, done, nil
}

// isPTYEnd reports whether err from reading a PTY master means every slave
// descriptor is closed (Linux returns EIO).
func isPTYEnd(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed)
}
