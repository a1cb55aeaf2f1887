package agent

import (
	"context"
	"fmt"
)

// sendLoop is the only writer of frames. It writes queued replies first,
// then output of attached sessions, then Exit messages, so an Exit always
// follows the last output bytes of its session on one connection.
func (s *Server) sendLoop() {
	s.mu.Lock()
	defer s.mu.Unlock()

	var broken uint64 // connection whose last write failed
	for {
		var item any
		if s.fw != nil && s.conn != broken {
			item = s.nextLocked()
		}
		if item == nil {
			s.cond.Wait()
			continue
		}
		fw, conn := s.fw, s.conn
		s.mu.Unlock()

		var err error
		switch it := item.(type) {
		case Message:
			err = fw.WriteFrame(it)
		case func():
			it()
		}

		s.mu.Lock()
		if err != nil && s.conn == conn {
			// The data stays in its outStream until acknowledged, so the
			// next connection's Attach sends it again.
			s.log.Printf("agent: write failed, pausing output until the next connection: %v", err)
			broken = conn
		}
	}
}

// nextLocked returns the next item to send, or nil when there is nothing.
func (s *Server) nextLocked() any {
	if len(s.ctrl) > 0 {
		item := s.ctrl[0]
		s.ctrl = s.ctrl[1:]
		return item
	}
	if !s.ready {
		return nil
	}
	for _, ss := range s.sessions {
		if !ss.attached {
			continue
		}
		for _, st := range []Stream{Stdout, Stderr} {
			o := ss.out[st]
			if o.sent < o.start {
				o.sent = o.start
			}
			if o.sent >= o.end() {
				continue
			}
			from := o.sent - o.start
			n := min(uint64(len(o.buf))-from, MaxDataLen)
			m := &Data{Session: ss.id, Stream: st, Offset: o.sent, Data: append([]byte(nil), o.buf[from:from+n]...)}
			o.sent += n
			return m
		}
		if ss.exited && !ss.exitSent && ss.out[Stdout].sent == ss.out[Stdout].end() && ss.out[Stderr].sent == ss.out[Stderr].end() {
			ss.exitSent = true
			return &Exit{Session: ss.id, Status: ss.status, StdoutEnd: ss.out[Stdout].end(), StderrEnd: ss.out[Stderr].end()}
		}
	}
	return nil
}

// evictLocked removes the session that exited first among those whose
// output every host has acknowledged, to make room when no host released
// them (a host process that died, for example). Only the exit status of
// such a session is lost. It reports whether it evicted one.
func (s *Server) evictLocked() bool {
	var oldest *session
	for _, ss := range s.sessions {
		done := ss.exited && ss.out[Stdout].start == ss.out[Stdout].end() && ss.out[Stderr].start == ss.out[Stderr].end()
		if done && (oldest == nil || ss.exitedAt.Before(oldest.exitedAt)) {
			oldest = ss
		}
	}
	if oldest == nil {
		return false
	}
	s.log.Printf("agent: session %d: forgotten to make room (exited with %s, output acknowledged, never released)", oldest.id, oldest.status)
	delete(s.sessions, oldest.id)
	return true
}

// stdinDataLocked queues stdin bytes for a session. Bytes it already has
// are dropped; a gap makes it ask the Client to send again.
func (s *Server) stdinDataLocked(m *Data) {
	if m.Stream != Stdin {
		s.replyLocked(&Error{Session: m.Session, Code: CodeProtocol,
			Message: fmt.Sprintf("data: the host sends stdin only, got %s", m.Stream)})
		return
	}
	ss := s.sessionLocked(m.Session)
	if ss == nil {
		return
	}

	end := m.Offset + uint64(len(m.Data))
	if end <= ss.stdinRecv {
		return // a copy of bytes already received
	}
	if ss.stdin == nil {
		s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest,
			Message: "data: the session has no stdin; set Exec.Stdin to forward input"})
		return
	}
	if ss.stdinClosed {
		return // the process exited or closed its input; the bytes have nowhere to go
	}
	if ss.stdinEnd >= 0 && end > uint64(ss.stdinEnd) {
		s.replyLocked(&Error{Session: m.Session, Code: CodeBadRequest, Message: fmt.Sprintf(
			"data: stdin bytes up to offset %d arrived after CloseStdin at offset %d", end, ss.stdinEnd)})
		return
	}
	if m.Offset > ss.stdinRecv {
		if ss.rewindAt != ss.stdinRecv+1 {
			ss.rewindAt = ss.stdinRecv + 1
			s.replyLocked(&Ack{Session: ss.id, Stream: Stdin, Offset: ss.stdinRecv, Rewind: true})
		}
		return
	}

	data := m.Data[ss.stdinRecv-m.Offset:]
	if len(ss.stdinQueue)+len(data) > 2*Window {
		s.replyLocked(&Error{Session: m.Session, Code: CodeProtocol, Message: fmt.Sprintf(
			"data: stdin would hold %d unwritten bytes, the limit is %d; wait for Acks", len(ss.stdinQueue)+len(data), 2*Window)})
		return
	}
	ss.stdinQueue = append(ss.stdinQueue, data...)
	ss.stdinRecv = end
	ss.rewindAt = 0
	wake(ss.stdinWake)
}

// resyncStdin sends a stdin Rewind for every open stdin, from the offset
// received, because corrupt input may have swallowed Data messages.
func (s *Server) resyncStdin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		if ss.stdin != nil && !ss.stdinClosed && ss.stdinEnd < 0 {
			s.replyLocked(&Ack{Session: ss.id, Stream: Stdin, Offset: ss.stdinRecv, Rewind: true})
		}
	}
}

// writeStdin writes queued stdin bytes to the process and acknowledges
// them, until the stdin end offset is reached or the process exits.
func (s *Server) writeStdin(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if ss.exited || ss.stdinClosed {
			return
		}
		if len(ss.stdinQueue) > 0 {
			chunk := ss.stdinQueue
			s.mu.Unlock()
			n, err := ss.stdin.Write(chunk)
			s.mu.Lock()
			ss.stdinQueue = ss.stdinQueue[n:]
			ss.stdinOff += uint64(n)
			s.replyLocked(&Ack{Session: ss.id, Stream: Stdin, Offset: ss.stdinOff})
			if err != nil {
				s.log.Printf("agent: session %d: write stdin: %v", ss.id, err)
				s.closeStdinLocked(ss)
				return
			}
			continue
		}
		if ss.stdinEnd >= 0 && ss.stdinOff >= uint64(ss.stdinEnd) {
			s.closeStdinLocked(ss)
			return
		}
		s.mu.Unlock()
		<-ss.stdinWake
		s.mu.Lock()
	}
}

// closeStdinLocked ends stdin: it closes the pipe, or types the EOF
// character (Ctrl-D) on a PTY, which ends input of a program that reads
// the terminal in canonical mode.
func (s *Server) closeStdinLocked(ss *session) {
	if ss.stdinClosed {
		return
	}
	ss.stdinClosed = true
	if ss.ptmx != nil {
		ss.ptmx.Write([]byte{4})
		return
	}
	ss.stdin.Close()
}

func (s *Server) setIdentityLocked(ctx context.Context, m *SetIdentity) {
	if s.cfg.ApplyIdentity == nil {
		s.replyLocked(&IdentityDone{Generation: m.Generation, Error: "set identity is not supported by this agent"})
		return
	}
	if s.identityBusy {
		s.replyLocked(&IdentityDone{Generation: m.Generation, Error: "another identity is being applied; wait for its IdentityDone"})
		return
	}
	s.identityBusy = true
	go func() {
		err := s.cfg.ApplyIdentity(ctx, m)

		s.mu.Lock()
		defer s.mu.Unlock()
		s.identityBusy = false
		done := &IdentityDone{Generation: m.Generation}
		if err != nil {
			done.Error = err.Error()
			s.log.Printf("agent: set identity %s: %v", m.Generation, err)
		} else {
			s.generation = m.Generation
			s.identityEnv = append([]string{"SPORE_GENERATION_ID=" + m.Generation}, m.Env...)
		}
		s.replyLocked(done)
		pending := s.pendingExec
		s.pendingExec = nil
		for _, e := range pending {
			s.execLocked(e)
		}
	}()
}

// freezeLocked runs a Freeze request on its own goroutine, because a sync
// can take long, and replies with FreezeDone.
func (s *Server) freezeLocked(ctx context.Context, m *Freeze) {
	if s.cfg.Freeze == nil {
		s.replyLocked(&FreezeDone{Nonce: m.Nonce, Error: "freeze is not supported by this agent"})
		return
	}
	go func() {
		err := s.cfg.Freeze(ctx, m.Thaw)

		s.mu.Lock()
		defer s.mu.Unlock()
		done := &FreezeDone{Nonce: m.Nonce}
		if err != nil {
			done.Error = err.Error()
			s.log.Printf("agent: freeze (thaw %v): %v", m.Thaw, err)
		}
		s.replyLocked(done)
	}()
}
