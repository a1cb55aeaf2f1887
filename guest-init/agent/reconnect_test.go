package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingScript prints n numbered lines on stdout and on stderr with a
// short pause, so a connection can be cut while it runs.
func countingScript(n int) string {
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; sleep 0.002; done`, n)
}

func countingOutput(prefix string, n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%s %d\n", prefix, i)
	}
	return b.String()
}

func sessionInfo(t *testing.T, c *Client, id uint32) SessionInfo {
	t.Helper()
	for _, si := range c.Hello().Sessions {
		if si.ID == id {
			return si
		}
	}
	t.Fatalf("HelloReply lists no session %d: %+v", id, c.Hello().Sessions)
	return SessionInfo{}
}

// TestReconnectNewStream cuts the stream under two running sessions,
// serves a new stream with the same Server and attaches a new Client at
// the offsets the first Client wrote.
func TestReconnectNewStream(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	p1 := newPipePair(t)
	served := serve(t, srv, p1)
	c1 := dial(t, p1)
	ctx := testCtx(t)

	const lines = 300
	var stdout, stderr syncBuffer
	counter, err := c1.Start(ctx, Request{Shell: countingScript(lines)}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	inR, inW := io.Pipe()
	var catOut syncBuffer
	cat, err := c1.Start(ctx, Request{Argv: []string{"cat"}}, inR, &catOut, nil)
	if err != nil {
		t.Fatalf("Start cat: %v", err)
	}
	io.WriteString(inW, "part1\n")
	waitFor(t, "cat to echo part1", 5*time.Second, func() bool { return catOut.String() == "part1\n" })
	waitFor(t, "50 lines of output", 5*time.Second, func() bool { return strings.Count(stdout.String(), "\n") >= 50 })

	// Cut: the first Client goes away while both sessions run.
	c1.Close()
	inW.Close()
	if err := <-served; err == nil {
		t.Errorf("Serve returned nil after the stream was cut, expected a read error")
	}
	outOff, errOff := counter.Offsets()
	if int(outOff) != len(stdout.String()) || int(errOff) != len(stderr.String()) {
		t.Fatalf("offsets %d/%d differ from the bytes written %d/%d", outOff, errOff, len(stdout.String()), len(stderr.String()))
	}
	catOff, _ := cat.Offsets()
	time.Sleep(100 * time.Millisecond) // the process keeps writing meanwhile

	p2 := newPipePair(t)
	serve(t, srv, p2)
	c2 := dial(t, p2)
	info := sessionInfo(t, c2, counter.ID())
	if info.Stdout.Start > outOff || info.Stdout.End < outOff {
		t.Errorf("stdout kept range %d..%d does not contain the written offset %d", info.Stdout.Start, info.Stdout.End, outOff)
	}
	catInfo := sessionInfo(t, c2, cat.ID())
	if catInfo.StdinOffset != 6 {
		t.Errorf("cat stdin offset = %d, expected 6", catInfo.StdinOffset)
	}

	counter2, err := c2.Attach(ctx, AttachRequest{Session: counter.ID(), StdoutFrom: outOff, StderrFrom: errOff}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	cat2, err := c2.Attach(ctx, AttachRequest{Session: cat.ID(), StdoutFrom: catOff}, strings.NewReader("part2\n"), &catOut, nil)
	if err != nil {
		t.Fatalf("Attach cat: %v", err)
	}
	for _, s := range []*Session{counter2, cat2} {
		st, err := s.Wait(ctx)
		if err != nil {
			t.Fatalf("Wait session %d: %v", s.ID(), err)
		}
		if st.Code != 0 {
			t.Errorf("session %d status = %+v, expected exit code 0", s.ID(), st)
		}
	}
	if got, want := stdout.String(), countingOutput("out", lines); got != want {
		t.Errorf("stdout across the cut has %d bytes, expected %d without gaps or repeats", len(got), len(want))
	}
	if got, want := stderr.String(), countingOutput("err", lines); got != want {
		t.Errorf("stderr across the cut has %d bytes, expected %d without gaps or repeats", len(got), len(want))
	}
	if got := catOut.String(); got != "part1\npart2\n" {
		t.Errorf("cat output = %q, expected %q", got, "part1\npart2\n")
	}
	info2, err := c2.Ping(ctx)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if info2.Sessions != 0 {
		t.Errorf("agent keeps %d sessions after both were waited for, expected 0 (released)", info2.Sessions)
	}
}

// relay sits between a Server that serves one stream for its whole life
// (as on a virtio-console port) and a changing Client, like the VMM
// process that is replaced when a VM is captured and resumed. Bytes the
// Server writes while no Client is connected are lost.
type relay struct {
	srvInR, srvInW   *os.File // the Server reads srvInR
	srvOutR, srvOutW *os.File // the Server writes srvOutW

	mu     sync.Mutex
	toHost *os.File // current Client's input, or nil
	skip   int      // bytes to drop before forwarding to a new Client
}

func newRelay(t *testing.T) *relay {
	p := newPipePair(t)
	r := &relay{srvInR: p.guestR, srvInW: p.hostW, srvOutR: p.hostR, srvOutW: p.guestW}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.srvOutR.Read(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			b := buf[:n]
			if r.skip > 0 {
				k := min(r.skip, len(b))
				b, r.skip = b[k:], r.skip-k
			}
			if r.toHost != nil && len(b) > 0 {
				r.toHost.Write(b)
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// connect returns the stream ends of a new Client. The first skip bytes
// the Server writes after this are dropped, so the Client starts reading
// in the middle of a frame.
func (r *relay) connect(t *testing.T, skip int) (io.Reader, io.Writer, func()) {
	p := newPipePair(t)
	r.mu.Lock()
	r.toHost, r.skip = p.guestW, skip
	r.mu.Unlock()
	go io.Copy(r.srvInW, p.guestR)
	cut := func() {
		r.mu.Lock()
		r.toHost = nil
		r.mu.Unlock()
		p.hostW.Close()
		p.guestW.Close()
	}
	return p.hostR, p.hostW, cut
}

// TestReconnectSameStreamMidFrame keeps one Server stream and replaces the
// Client, the way a resumed VM continues on the same console port. The new
// Client starts reading inside a frame, and the Server is left inside a
// partial frame from the old host; both sides must resynchronize.
func TestReconnectSameStreamMidFrame(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	r := newRelay(t)
	go srv.Serve(testCtx(t), r.srvInR, r.srvOutW)
	ctx := testCtx(t)

	hostR, hostW, cut := r.connect(t, 0)
	c1, err := Dial(ctx, hostR, hostW, ClientOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	const lines = 400
	var stdout, stderr syncBuffer
	s1, err := c1.Start(ctx, Request{Shell: countingScript(lines)}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitFor(t, "40 lines of output", 5*time.Second, func() bool { return strings.Count(stdout.String(), "\n") >= 40 })

	// The old host dies with a frame half written to the guest.
	cut()
	c1.Close()
	half := AppendFrame(nil, &Data{Session: s1.ID(), Stream: Stdin, Offset: 0, Data: make([]byte, 1000)})
	r.srvInW.Write(half[:HeaderSize+100])
	outOff, errOff := s1.Offsets()
	time.Sleep(50 * time.Millisecond)

	// The new host starts reading 7 bytes into whatever the guest sends.
	hostR, hostW, _ = r.connect(t, 7)
	c2, err := Dial(ctx, hostR, hostW, ClientOptions{Logger: testLogger(t), HelloInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Dial after the cut: %v", err)
	}
	defer c2.Close()
	s2, err := c2.Attach(ctx, AttachRequest{Session: s1.ID(), StdoutFrom: outOff, StderrFrom: errOff}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	st, err := s2.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.Code != 0 {
		t.Errorf("status = %+v, expected exit code 0", st)
	}
	if got, want := stdout.String(), countingOutput("out", lines); got != want {
		t.Errorf("stdout across the cut has %d bytes, expected %d without gaps or repeats", len(got), len(want))
	}
	if got, want := stderr.String(), countingOutput("err", lines); got != want {
		t.Errorf("stderr across the cut has %d bytes, expected %d without gaps or repeats", len(got), len(want))
	}
}

func TestAttachBelowKeptRangeRejected(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	p1 := newPipePair(t)
	serve(t, srv, p1)
	c1 := dial(t, p1)
	ctx := testCtx(t)
	var out syncBuffer
	s, err := c1.Start(ctx, Request{Shell: "echo hello; sleep 30"}, nil, &out, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitFor(t, "hello", 5*time.Second, func() bool { return out.String() == "hello\n" })
	// Acks are sent after each write; give the agent a moment to drop them.
	waitFor(t, "the agent to drop acknowledged bytes", 5*time.Second, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.sessions[s.ID()].out[Stdout].start == 6
	})
	c1.Close()

	p2 := newPipePair(t)
	serve(t, srv, p2)
	c2 := dial(t, p2)
	_, err = c2.Attach(ctx, AttachRequest{Session: s.ID(), StdoutFrom: 0}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "outside the kept range 6..6") {
		t.Errorf("Attach at offset 0 = %v, expected an error about the kept range 6..6", err)
	}
	s2, err := c2.Attach(ctx, AttachRequest{Session: s.ID(), StdoutFrom: 6}, nil, nil, nil)
	if err != nil {
		t.Fatalf("Attach at offset 6: %v", err)
	}
	s2.Signal(9)
	if st, err := s2.Wait(ctx); err != nil || st.Signal != 9 {
		t.Errorf("Wait = %+v, %v; expected signal 9", st, err)
	}
}

// TestSessionLimitEvictsUnreleased fills a Server with sessions that a
// dead host never released, and checks which ones make room.
func TestSessionLimitEvictsUnreleased(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t), MaxSessions: 2})
	p1 := newPipePair(t)
	serve(t, srv, p1)
	c1 := dial(t, p1)
	ctx := testCtx(t)
	sleeper, err := c1.Start(ctx, Request{Argv: []string{"sleep", "30"}}, nil, nil, nil)
	if err != nil {
		t.Fatalf("Start sleep: %v", err)
	}
	quick, err := c1.Start(ctx, Request{Argv: []string{"true"}}, nil, nil, nil)
	if err != nil {
		t.Fatalf("Start true: %v", err)
	}
	c1.Close() // the host dies without releasing either session
	waitFor(t, "the true session to exit", 5*time.Second, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.sessions[quick.ID()].exited
	})

	p2 := newPipePair(t)
	serve(t, srv, p2)
	c2 := dial(t, p2)
	if n := len(c2.Hello().Sessions); n != 2 {
		t.Fatalf("HelloReply lists %d sessions, expected 2", n)
	}
	// The exited session with no unacknowledged output makes room.
	if st, err := c2.Exec(ctx, Request{Argv: []string{"true"}}, nil, nil, nil); err != nil || st.Code != 0 {
		t.Fatalf("Exec at the limit = %v, %v; expected the exited session to be evicted", st, err)
	}
	srv.mu.Lock()
	_, kept := srv.sessions[quick.ID()]
	srv.mu.Unlock()
	if kept {
		t.Errorf("session %d is still kept, expected it evicted", quick.ID())
	}

	// Two running sessions leave no room.
	second, err := c2.Start(ctx, Request{Argv: []string{"sleep", "30"}}, nil, nil, nil)
	if err != nil {
		t.Fatalf("Start second sleep: %v", err)
	}
	_, err = c2.Exec(ctx, Request{Argv: []string{"true"}}, nil, nil, nil)
	var rerr *RemoteError
	if !errors.As(err, &rerr) || rerr.Code != CodeTooMany {
		t.Errorf("Exec with two running sessions = %v, expected CodeTooMany", err)
	}
	second.Signal(9)
	second.Wait(ctx)
	s, err := c2.Attach(ctx, AttachRequest{Session: sleeper.ID()}, nil, nil, nil)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	s.Signal(9)
	s.Wait(ctx)
}

// TestRepeatedHelloRepliesOnce checks that a Hello the Client repeats
// (same nonce) gets the reply again without starting a new connection,
// and that a Hello with another nonce does start one.
func TestRepeatedHelloRepliesOnce(t *testing.T) {
	srv := NewServer(ServerConfig{})
	p := newPipePair(t)
	serve(t, srv, p)
	fw := NewFrameWriter(p.hostW)
	fr := NewFrameReader(p.hostR)

	var firstConn int
	for i, nonce := range []uint64{7, 7, 7, 8} {
		if err := fw.WriteFrame(&Hello{MinVersion: MinProtocolVersion, MaxVersion: ProtocolVersion, Nonce: nonce}); err != nil {
			t.Fatal(err)
		}
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("Hello %d: read reply: %v", i, err)
		}
		m, err := Decode(f)
		if err != nil {
			t.Fatalf("Hello %d: decode reply: %v", i, err)
		}
		reply, ok := m.(*HelloReply)
		if !ok {
			t.Fatalf("Hello %d: reply is a %s, expected a HelloReply", i, m.Type())
		}
		if reply.Nonce != nonce {
			t.Errorf("Hello %d: reply nonce %d, expected %d", i, reply.Nonce, nonce)
		}
		if reply.Info.BootID == "" && fileExists("/proc/sys/kernel/random/boot_id") {
			t.Errorf("Hello %d: reply has no boot ID", i)
		}
		if i == 0 {
			firstConn = srv.connection()
		}
	}

	if n := srv.connection() - firstConn + 1; n != 2 {
		t.Errorf("Hellos with nonces 7, 7, 7, 8 started %d connections, expected 2", n)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// connection returns the number of the server's current connection.
func (s *Server) connection() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.conn)
}
