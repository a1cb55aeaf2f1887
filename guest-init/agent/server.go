package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ServerConfig configures a Server. The zero value is usable.
type ServerConfig struct {
	// AgentVersion is reported in AgentInfo.
	AgentVersion string

	// Env is the base environment of every session; a request's Env
	// entries are added to it. Nil means PATH=DefaultPath and HOME=/root.
	Env []string

	// Reaper waits for session processes. Nil starts one that waits only
	// for the Server's own children.
	Reaper *Reaper

	// ApplyIdentity applies a SetIdentity request. Nil rejects SetIdentity.
	ApplyIdentity func(ctx context.Context, m *SetIdentity) error

	// Poweroff is called after the reply to a Poweroff request is written.
	// Nil rejects Poweroff.
	Poweroff func()

	// Freeze syncs and freezes the root file system, or thaws it when thaw
	// is true, for a Freeze request. Nil rejects Freeze.
	Freeze func(ctx context.Context, thaw bool) error

	// Logger receives connection events and errors. Nil discards them.
	Logger *log.Logger

	// MaxSessions is the number of sessions kept at once, at most (and by
	// default) the protocol's MaxSessions.
	MaxSessions int
}

// Server is the guest side of the agent protocol. One Server keeps its
// sessions across connections: Serve may be called again with a new stream
// after the previous one ended, and a Hello within a stream starts a new
// connection on it. Sessions stay detached until a Client attaches to them.
type Server struct {
	cfg     ServerConfig
	reaper  *Reaper
	started time.Time
	log     *log.Logger

	mu       sync.Mutex
	cond     *sync.Cond // signalled on every change the sender may act on
	sessions map[uint32]*session
	fw       *FrameWriter // current connection, nil between connections
	conn     uint64       // incremented for each new connection
	ready    bool         // a valid Hello arrived on the current connection
	ctrl     []any        // Message or func() to run after the preceding messages are written

	// helloNonce is the nonce of the Hello that started the current
	// connection. A Client repeats its Hello until the first reply
	// arrives, and a repeat only gets the reply again.
	helloNonce uint64
	// bootID is the kernel's boot ID, read once: it does not change while
	// the kernel runs, and a resumed guest runs the same kernel.
	bootID string

	identityBusy bool
	generation   string
	identityEnv  []string // the applied identity's environment, added to every later session
	pendingExec  []*Exec  // Exec requests that arrived while an identity was being applied
}

// NewServer returns a Server with cfg.
func NewServer(cfg ServerConfig) *Server {
	s := &Server{
		cfg:      cfg,
		reaper:   cfg.Reaper,
		started:  time.Now(),
		log:      cfg.Logger,
		sessions: make(map[uint32]*session),
	}
	if s.reaper == nil {
		s.reaper = NewReaper(false, nil)
	}
	if s.log == nil {
		s.log = log.New(io.Discard, "", 0)
	}
	if s.cfg.MaxSessions <= 0 || s.cfg.MaxSessions > MaxSessions {
		s.cfg.MaxSessions = MaxSessions
	}
	if s.cfg.Env == nil {
		s.cfg.Env = []string{"PATH=" + DefaultPath, "HOME=/root"}
	}
	s.cond = sync.NewCond(&s.mu)
	go s.sendLoop()
	return s
}

// Serve reads requests from r and writes replies to w until reading fails
// or ctx is done. It returns the read error (io.EOF when the stream ended).
// Sessions keep running after Serve returns. A new Serve takes over
// output from one that is still running; the old one should be ended by
// closing its stream.
func (s *Server) Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	fr := NewFrameReader(r)
	fw := NewFrameWriter(w)
	s.mu.Lock()
	s.fw = fw
	s.conn++
	s.ready = false
	s.detachAllLocked()
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		// A newer Serve may have taken over while this one was still
		// waiting for its read to fail; leave its connection alone.
		if s.fw == fw {
			s.fw = nil
			s.ready = false
			s.detachAllLocked()
			s.cond.Broadcast()
		}
		s.mu.Unlock()
	}()

	stop := context.AfterFunc(ctx, func() {
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
	})
	defer stop()

	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, ErrCorruptFrame) {
			s.log.Printf("agent: skipping corrupt input: %v", err)
			s.resyncStdin()
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		m, err := Decode(f)
		if err != nil {
			s.reply(&Error{Code: CodeProtocol, Message: err.Error()})
			continue
		}
		s.handle(ctx, m)
	}
}

// detachAllLocked stops output for every session until a Client attaches.
func (s *Server) detachAllLocked() {
	for _, ss := range s.sessions {
		ss.attached = false
		ss.exitSent = false
	}
	s.ctrl = nil
}

// reply queues a message for the sender.
func (s *Server) reply(m Message) {
	s.mu.Lock()
	s.replyLocked(m)
	s.mu.Unlock()
}

func (s *Server) replyLocked(m any) {
	if e, ok := m.(*Error); ok {
		s.log.Printf("agent: session %d: rejected request: %s", e.Session, e.Message)
	}
	s.ctrl = append(s.ctrl, m)
	s.cond.Broadcast()
}

func (s *Server) handle(ctx context.Context, m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if h, ok := m.(*Hello); ok {
		s.handleHelloLocked(h)
		return
	}
	if !s.ready {
		s.log.Printf("agent: ignoring %s before Hello", m.Type())
		return
	}
	switch m := m.(type) {
	case *Ping:
		s.replyLocked(&Pong{Nonce: m.Nonce, Info: s.infoLocked()})
	case *Exec:
		if s.identityBusy {
			s.pendingExec = append(s.pendingExec, m)
			return
		}
		s.execLocked(m)
	case *Data:
		s.stdinDataLocked(m)
	case *Ack:
		s.ackLocked(m)
	case *CloseStdin:
		if ss := s.sessionLocked(m.Session); ss != nil {
			if m.Offset < ss.stdinOff {
				s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest,
					Message: fmt.Sprintf("close stdin at offset %d: %d bytes were already written", m.Offset, ss.stdinOff)})
				return
			}
			ss.stdinEnd = int64(m.Offset)
			wake(ss.stdinWake)
		}
	case *Resize:
		s.resizeLocked(m)
	case *Signal:
		// The session's process leads its own process group (Setpgid, or
		// Setsid for a PTY), so the signal also reaches the children that
		// hold its output open, as a terminal's Ctrl-C would.
		if ss := s.sessionLocked(m.Session); ss != nil && !ss.exited {
			if err := unix.Kill(-ss.pid, unix.Signal(m.Signal)); err != nil {
				s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest,
					Message: fmt.Sprintf("send signal %d: %v", m.Signal, err)})
			}
		}
	case *Attach:
		s.attachLocked(m)
	case *Release:
		ss := s.sessionLocked(m.Session)
		if ss == nil {
			return
		}
		if !ss.exited {
			s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest,
				Message: "release: the session is still running; send Signal first"})
			return
		}
		delete(s.sessions, m.Session)
	case *Poweroff:
		if s.cfg.Poweroff == nil {
			s.replyLocked(&Error{Code: CodeBadRequest, Message: "poweroff is not supported by this agent"})
			return
		}
		s.replyLocked(&Pong{Nonce: m.Nonce, Info: s.infoLocked()})
		s.replyLocked(s.cfg.Poweroff)
	case *SetIdentity:
		s.setIdentityLocked(ctx, m)
	case *Freeze:
		s.freezeLocked(ctx, m)
	default:
		s.replyLocked(&Error{Code: CodeProtocol, Message: fmt.Sprintf("%s is not a request", m.Type())})
	}
}

func (s *Server) handleHelloLocked(h *Hello) {
	if s.ready && h.Nonce == s.helloNonce {
		s.replyLocked(s.helloReplyLocked(min(h.MaxVersion, ProtocolVersion), h.Nonce))
		return
	}

	// Any other Hello starts a new connection: the previous host is gone,
	// so forget what was queued for it and wait for new Attach requests.
	s.detachAllLocked()
	s.conn++
	if h.MaxVersion < MinProtocolVersion || h.MinVersion > ProtocolVersion {
		s.ready = false
		s.replyLocked(&Error{Code: CodeVersion, Message: fmt.Sprintf(
			"client speaks protocol versions %d..%d, this agent speaks %d..%d",
			h.MinVersion, h.MaxVersion, MinProtocolVersion, ProtocolVersion)})
		return
	}
	s.ready = true
	s.helloNonce = h.Nonce
	version := min(h.MaxVersion, ProtocolVersion)
	// No log line here, because the host logs the connection and a console
	// write makes each resumed guest copy more of its shared pages.
	s.replyLocked(s.helloReplyLocked(version, h.Nonce))
}

func (s *Server) helloReplyLocked(version uint16, nonce uint64) *HelloReply {
	reply := &HelloReply{Version: version, Nonce: nonce, Info: s.infoLocked()}
	for _, ss := range s.sessions {
		reply.Sessions = append(reply.Sessions, ss.info())
	}
	return reply
}

func (s *Server) infoLocked() AgentInfo {
	host, _ := os.Hostname()
	if s.bootID == "" {
		b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
		s.bootID = strings.TrimSpace(string(b))
	}
	info := AgentInfo{
		AgentVersion: s.cfg.AgentVersion,
		BootID:       s.bootID,
		Generation:   s.generation,
		Hostname:     host,
		Uptime:       uint64(time.Since(s.started)),
		Sessions:     uint32(len(s.sessions)),
		Ready:        !s.identityBusy,
	}
	for _, ss := range s.sessions {
		if !ss.exited {
			info.Running++
		}
	}
	return info
}

func (s *Server) sessionLocked(id uint32) *session {
	ss := s.sessions[id]
	if ss == nil {
		s.replyLocked(&Error{Session: id, Code: CodeUnknownSession,
			Message: fmt.Sprintf("session %d not found; HelloReply lists the sessions this agent keeps", id)})
	}
	return ss
}

func (s *Server) execLocked(m *Exec) {
	if _, ok := s.sessions[m.Session]; ok {
		s.replyLocked(&Error{Session: m.Session, Code: CodeSessionExists,
			Message: fmt.Sprintf("session %d already exists; choose a new ID", m.Session)})
		return
	}
	if len(s.sessions) >= s.cfg.MaxSessions && !s.evictLocked() {
		s.replyLocked(&Error{Session: m.Session, Code: CodeTooMany, Message: fmt.Sprintf(
			"the agent keeps %d sessions, the limit, and each is running or has unacknowledged output; release or attach to exited sessions first",
			len(s.sessions))})
		return
	}
	ss, readers, done, err := startSession(m, mergeEnv(s.cfg.Env, s.identityEnv), s.reaper)
	if err != nil {
		s.replyLocked(&Error{Session: m.Session, Code: CodeExecFailed, Message: "exec: " + err.Error()})
		return
	}
	ss.pid = ss.cmd.Process.Pid
	ss.attached = true
	s.sessions[m.Session] = ss
	s.replyLocked(&Started{Session: m.Session, PID: uint32(ss.pid)})

	var pumps sync.WaitGroup
	for st, r := range readers {
		if r != nil {
			pumps.Add(1)
			go func() {
				defer pumps.Done()
				s.pump(ss, Stream(st), r)
			}()
		}
	}
	if ss.tty {
		ss.out[Stderr].eof = true // a PTY merges stderr into stdout
	}
	if ss.stdin != nil {
		go s.writeStdin(ss)
	}
	go s.waitExit(ss, done, &pumps)
}

// waitExit records the exit status once the process is reaped and all of
// its output is read.
func (s *Server) waitExit(ss *session, done <-chan unix.WaitStatus, pumps *sync.WaitGroup) {
	ws := <-done

	s.mu.Lock()
	ss.reaped = true
	ss.status = exitStatus(ws)
	ss.cmd.Process.Release() // closes the pidfd
	s.mu.Unlock()

	pumps.Wait()

	s.mu.Lock()
	ss.exited = true
	ss.exitedAt = time.Now()
	if ss.ptmx != nil {
		ss.ptmx.Close()
	} else if ss.stdin != nil {
		ss.stdin.Close()
	}
	ss.stdinClosed = true
	wake(ss.stdinWake)
	s.cond.Broadcast()
	s.mu.Unlock()
	s.log.Printf("agent: session %d: %s", ss.id, ss.status)
}

// pump copies one output stream of a process into its outStream, waiting
// while the stream holds a full Window of unacknowledged bytes.
func (s *Server) pump(ss *session, st Stream, r *os.File) {
	if r != ss.ptmx {
		defer r.Close()
	}
	buf := make([]byte, MaxDataLen)
	o := ss.out[st]
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.mu.Lock()
			for len(o.buf) >= Window {
				s.cond.Wait()
			}
			o.buf = append(o.buf, buf[:n]...)
			s.cond.Broadcast()
			s.mu.Unlock()
		}
		if err != nil {
			if ss.tty && !isPTYEnd(err) || !ss.tty && err != io.EOF {
				s.log.Printf("agent: session %d: read %s: %v", ss.id, st, err)
			}
			s.mu.Lock()
			o.eof = true
			s.cond.Broadcast()
			s.mu.Unlock()
			return
		}
	}
}

func (s *Server) resizeLocked(m *Resize) {
	ss := s.sessionLocked(m.Session)
	if ss == nil {
		return
	}
	if ss.ptmx == nil {
		s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest, Message: "resize: the session has no TTY"})
		return
	}
	if ss.exited {
		return
	}
	if err := pty.Setsize(ss.ptmx, &pty.Winsize{Rows: m.Rows, Cols: m.Cols}); err != nil {
		s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest,
			Message: fmt.Sprintf("resize to %dx%d: %v", m.Cols, m.Rows, err)})
	}
}

func (s *Server) attachLocked(m *Attach) {
	ss := s.sessionLocked(m.Session)
	if ss == nil {
		return
	}
	for _, p := range []struct {
		st   Stream
		from uint64
	}{{Stdout, m.StdoutFrom}, {Stderr, m.StderrFrom}} {
		o := ss.out[p.st]
		if p.from < o.start || p.from > o.end() {
			s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest, Message: fmt.Sprintf(
				"attach: %s offset %d is outside the kept range %d..%d", p.st, p.from, o.start, o.end())})
			return
		}
	}
	// Attaching at an offset acknowledges every byte before it.
	ss.out[Stdout].ack(m.StdoutFrom)
	ss.out[Stderr].ack(m.StderrFrom)
	ss.out[Stdout].sent = m.StdoutFrom
	ss.out[Stderr].sent = m.StderrFrom
	ss.attached = true
	ss.exitSent = false
	s.replyLocked(&Status{Info: ss.info()})
}

func (s *Server) ackLocked(m *Ack) {
	ss := s.sessionLocked(m.Session)
	if ss == nil {
		return
	}
	if m.Stream == Stdin {
		s.replyLocked(&Error{Session: m.Session, Code: CodeProtocol, Message: "ack: the host acknowledges output streams only"})
		return
	}
	o := ss.out[m.Stream]
	if m.Offset < o.start || m.Offset > o.end() {
		s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest, Message: fmt.Sprintf(
			"ack: %s offset %d is outside the kept range %d..%d", m.Stream, m.Offset, o.start, o.end())})
		return
	}
	// A Rewind only moves the send position: the Client has received the
	// bytes before it but may not have written them anywhere yet.
	if m.Rewind {
		o.sent = m.Offset
		ss.exitSent = false
	} else {
		o.ack(m.Offset)
	}
	s.cond.Broadcast()
}

// wake makes a pending or next receive on ch return, without blocking.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
