package agent

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
)

// Request describes a command to run in the guest. Exactly one of Argv and
// Shell is set.
type Request struct {
	Argv  []string
	Shell string   // run as /bin/sh -lc Shell
	Env   []string // KEY=VALUE entries added to the agent's base environment
	Dir   string   // absolute working directory; empty means /
	TTY   bool     // allocate a PTY; output then arrives on stdout only
	Rows  uint16   // initial PTY size; 0 keeps the kernel default
	Cols  uint16
}

// AttachRequest names a session of an earlier connection and the output
// offsets to continue from. Offsets below the stream Start in the
// session's SessionInfo are gone and rejected.
type AttachRequest struct {
	Session    uint32
	StdoutFrom uint64
	StderrFrom uint64
}

// Session is a command running in the guest, seen from the host.
type Session struct {
	c      *Client
	id     uint32
	stdout io.Writer
	stderr io.Writer

	// Guarded by c.mu.
	started   bool
	info      SessionInfo   // from Started or Status
	startedc  chan struct{} // closed once started or failed
	recv      [3]uint64     // output bytes received, by Stream
	delivered [3]uint64     // output bytes written to stdout or stderr
	rewindAt  [3]uint64     // recv+1 at the last Rewind sent, to send one per gap
	queue     []*Data       // received output not yet written
	exit      *Exit
	status    ExitStatus
	err       error         // set when the session failed on this Client
	donec     chan struct{} // closed when finished or failed
	finished  bool

	stdinBuf   []byte // stdin bytes from stdinStart not yet acknowledged
	stdinStart uint64
	stdinSent  uint64
	stdinEOF   bool
	closeSent  bool

	deliverWG sync.WaitGroup
}

// Exec runs req in the guest, copies stdin to the process (nil stdin
// means it reads EOF at once), writes its output to stdout and stderr
// (nil discards), and returns its exit status.
func (c *Client) Exec(ctx context.Context, req Request, stdin io.Reader, stdout, stderr io.Writer) (ExitStatus, error) {
	s, err := c.Start(ctx, req, stdin, stdout, stderr)
	if err != nil {
		return ExitStatus{}, err
	}
	return s.Wait(ctx)
}

// Start starts req in the guest and returns once the process runs.
func (c *Client) Start(ctx context.Context, req Request, stdin io.Reader, stdout, stderr io.Writer) (*Session, error) {
	m := &Exec{Argv: req.Argv, Shell: req.Shell, Env: req.Env, Dir: req.Dir,
		Stdin: stdin != nil, TTY: req.TTY, Rows: req.Rows, Cols: req.Cols}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.err
	}
	for c.nextID == 0 || c.sessions[c.nextID] != nil || c.helloHasLocked(c.nextID) {
		c.nextID++
	}
	m.Session = c.nextID
	c.nextID++
	if err := m.Validate(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	s := c.newSessionLocked(m.Session, stdout, stderr)
	c.sendLocked(m)
	c.mu.Unlock()

	if err := s.waitStarted(ctx); err != nil {
		return nil, err
	}
	if stdin != nil {
		go s.pumpStdin(stdin)
	}
	return s, nil
}

// Attach continues a session that an earlier connection started, for
// example after the VM was captured and resumed. stdin, when not nil,
// supplies the session's input from the offset the agent reports
// (SessionInfo.StdinOffset). It is not read when the session's stdin is
// already closed.
func (c *Client) Attach(ctx context.Context, req AttachRequest, stdin io.Reader, stdout, stderr io.Writer) (*Session, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.err
	}
	if c.sessions[req.Session] != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("agent: attach: session %d is already attached on this client", req.Session)
	}
	s := c.newSessionLocked(req.Session, stdout, stderr)
	s.recv[Stdout], s.delivered[Stdout] = req.StdoutFrom, req.StdoutFrom
	s.recv[Stderr], s.delivered[Stderr] = req.StderrFrom, req.StderrFrom
	c.sendLocked(&Attach{Session: req.Session, StdoutFrom: req.StdoutFrom, StderrFrom: req.StderrFrom})
	c.mu.Unlock()

	if err := s.waitStarted(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	s.stdinStart, s.stdinSent = s.info.StdinOffset, s.info.StdinOffset
	open := !s.info.StdinClosed
	c.mu.Unlock()
	if stdin != nil && open {
		go s.pumpStdin(stdin)
	}
	return s, nil
}

func (c *Client) helloHasLocked(id uint32) bool {
	for _, si := range c.hello.Sessions {
		if si.ID == id {
			return true
		}
	}
	return false
}

func (c *Client) newSessionLocked(id uint32, stdout, stderr io.Writer) *Session {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	s := &Session{c: c, id: id, stdout: stdout, stderr: stderr,
		startedc: make(chan struct{}), donec: make(chan struct{})}
	c.sessions[id] = s
	s.deliverWG.Add(1)
	go s.deliver()
	return s
}

func (s *Session) waitStarted(ctx context.Context) error {
	select {
	case <-s.startedc:
	case <-ctx.Done():
		// The guest may still start the process. This Client stops
		// tracking it; HelloReply of a later connection lists it.
		err := fmt.Errorf("agent: session %d: waiting for the process to start: %w", s.id, ctx.Err())
		s.c.mu.Lock()
		s.failLocked(err)
		s.c.mu.Unlock()
		return err
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if !s.started {
		return s.err
	}
	return nil
}

// ID returns the session ID, which a later Client passes to Attach.
func (s *Session) ID() uint32 { return s.id }

// PID returns the process ID in the guest.
func (s *Session) PID() uint32 {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.info.PID
}

// Offsets returns how many bytes of stdout and stderr were written to the
// caller's writers. After Client.Close they are final, and an AttachRequest
// with them continues each stream without a gap or a repeat.
func (s *Session) Offsets() (stdout, stderr uint64) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.delivered[Stdout], s.delivered[Stderr]
}

// Wait waits for the process to exit and all of its output to be written,
// and returns its exit status. When ctx ends first, the process keeps
// running.
func (s *Session) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-s.donec:
	case <-ctx.Done():
		return ExitStatus{}, fmt.Errorf("agent: session %d: %w", s.id, ctx.Err())
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.status, s.err
}

// Resize sets the PTY window size of a TTY session.
func (s *Session) Resize(rows, cols uint16) error {
	return s.request(&Resize{Session: s.id, Rows: rows, Cols: cols})
}

// Signal sends sig to the process group of the session's process.
func (s *Session) Signal(sig syscall.Signal) error {
	if sig <= 0 || sig > MaxSignal {
		return fmt.Errorf("agent: signal %d is out of range 1..%d", int(sig), MaxSignal)
	}
	return s.request(&Signal{Session: s.id, Signal: uint8(sig)})
}

func (s *Session) request(m Message) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.closed {
		return s.c.err
	}
	if s.finished {
		return fmt.Errorf("agent: session %d has ended", s.id)
	}
	s.c.sendLocked(m)
	return nil
}

func (s *Session) startedLocked(pid uint32) {
	if !s.started && !s.finished {
		s.started = true
		s.info.ID, s.info.PID = s.id, pid
		close(s.startedc)
	}
}

func (s *Session) statusLocked(info SessionInfo) {
	s.info = info
	if !s.started && !s.finished {
		s.started = true
		close(s.startedc)
	}
}

func (s *Session) remoteErrorLocked(err *RemoteError) {
	if !s.started || err.Code == CodeUnknownSession {
		s.failLocked(err)
		return
	}
	s.c.log.Printf("agent client: %v", err)
}

// failLocked ends the session on this Client with err.
func (s *Session) failLocked(err error) {
	if s.finished {
		return
	}
	s.finished = true
	s.err = err
	delete(s.c.sessions, s.id)
	if !s.started {
		close(s.startedc)
	}
	close(s.donec)
	s.c.cond.Broadcast()
}

// dataLocked queues output bytes that continue a stream. Copies of bytes
// already received are dropped, and a gap makes it request a resend.
func (s *Session) dataLocked(m *Data) {
	if m.Stream != Stdout && m.Stream != Stderr || s.finished {
		return
	}
	st := m.Stream
	end := m.Offset + uint64(len(m.Data))
	if end <= s.recv[st] {
		return
	}
	if m.Offset > s.recv[st] {
		s.rewindLocked(st)
		return
	}
	m.Data = m.Data[s.recv[st]-m.Offset:]
	m.Offset = s.recv[st]
	s.queue = append(s.queue, m)
	s.recv[st] = end
	s.rewindAt[st] = 0
	s.c.cond.Broadcast()
}

func (s *Session) rewindLocked(st Stream) {
	if s.rewindAt[st] == s.recv[st]+1 {
		return
	}
	s.rewindAt[st] = s.recv[st] + 1
	s.c.sendLocked(&Ack{Session: s.id, Stream: st, Offset: s.recv[st], Rewind: true})
}

func (s *Session) exitLocked(m *Exit) {
	s.exit = m
	if s.recv[Stdout] < m.StdoutEnd {
		s.rewindLocked(Stdout)
	}
	if s.recv[Stderr] < m.StderrEnd {
		s.rewindLocked(Stderr)
	}
	s.c.cond.Broadcast()
}

// deliver writes queued output to the caller's writers in order and
// acknowledges it, then reports the exit once all output is written.
func (s *Session) deliver() {
	c := s.c
	defer s.deliverWG.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(s.queue) == 0 && !s.finished && !c.closed && !s.completeLocked() {
			c.cond.Wait()
		}
		if s.finished || c.closed {
			return
		}
		if len(s.queue) == 0 {
			// Every byte up to the Exit offsets is written.
			s.status = s.exit.Status
			s.finished = true
			close(s.donec)
			delete(c.sessions, s.id)
			c.sendLocked(&Release{Session: s.id})
			return
		}
		m := s.queue[0]
		s.queue = s.queue[1:]
		w := s.stdout
		if m.Stream == Stderr {
			w = s.stderr
		}
		c.mu.Unlock()
		_, err := w.Write(m.Data)
		c.mu.Lock()
		if err != nil {
			s.failLocked(fmt.Errorf("agent: session %d: write %s: %w", s.id, m.Stream, err))
			return
		}
		s.delivered[m.Stream] += uint64(len(m.Data))
		c.sendLocked(&Ack{Session: s.id, Stream: m.Stream, Offset: s.delivered[m.Stream]})
	}
}

func (s *Session) completeLocked() bool {
	return s.exit != nil && len(s.queue) == 0 &&
		s.delivered[Stdout] == s.exit.StdoutEnd && s.delivered[Stderr] == s.exit.StderrEnd
}

// pumpStdin reads the caller's stdin and sends it, keeping at most Window
// unacknowledged bytes, then sends CloseStdin at EOF.
//
// NOTE: a Read that blocks (a terminal, for example) keeps this goroutine
// alive after the session ends, until that Read returns.
func (s *Session) pumpStdin(r io.Reader) {
	c := s.c
	buf := make([]byte, MaxDataLen)
	for {
		n, err := r.Read(buf)
		c.mu.Lock()
		for len(s.stdinBuf) >= Window && !s.finished && !c.closed {
			c.cond.Wait()
		}
		if s.finished || c.closed {
			c.mu.Unlock()
			return
		}
		s.stdinBuf = append(s.stdinBuf, buf[:n]...)
		if err != nil {
			if err != io.EOF {
				c.log.Printf("agent client: session %d: read stdin: %v; closing the session's stdin", s.id, err)
			}
			s.stdinEOF = true
		}
		s.sendStdinLocked()
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// sendStdinLocked queues stdin Data from stdinSent to the end of stdinBuf,
// and CloseStdin once the caller's stdin ended and everything is queued.
func (s *Session) sendStdinLocked() {
	end := s.stdinStart + uint64(len(s.stdinBuf))
	for s.stdinSent < end {
		from := s.stdinSent - s.stdinStart
		n := min(uint64(len(s.stdinBuf))-from, MaxDataLen)
		s.c.sendLocked(&Data{Session: s.id, Stream: Stdin, Offset: s.stdinSent,
			Data: append([]byte(nil), s.stdinBuf[from:from+n]...)})
		s.stdinSent += n
	}
	if s.stdinEOF && !s.closeSent {
		s.closeSent = true
		s.c.sendLocked(&CloseStdin{Session: s.id, Offset: end})
	}
}

// stdinAckLocked drops acknowledged stdin bytes, or sends again from the
// offset of a Rewind.
func (s *Session) stdinAckLocked(m *Ack) {
	if m.Stream != Stdin {
		return
	}
	end := s.stdinStart + uint64(len(s.stdinBuf))
	if m.Offset < s.stdinStart || m.Offset > end {
		return
	}
	if m.Rewind {
		s.stdinSent = m.Offset
		s.closeSent = false
		s.sendStdinLocked()
		return
	}
	s.stdinBuf = s.stdinBuf[m.Offset-s.stdinStart:]
	s.stdinStart = m.Offset
	if s.stdinSent < s.stdinStart {
		s.stdinSent = s.stdinStart
	}
	s.c.cond.Broadcast()
}
