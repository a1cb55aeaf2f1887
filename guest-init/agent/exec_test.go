package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestExecStdoutStderrApart(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	var stdout, stderr bytes.Buffer
	st, err := c.Exec(testCtx(t), Request{Shell: "echo out; echo err >&2; echo out2; exit 3"}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 3 || st.Signal != 0 {
		t.Errorf("status = %+v, expected exit code 3", st)
	}
	if got := stdout.String(); got != "out\nout2\n" {
		t.Errorf("stdout = %q, expected %q", got, "out\nout2\n")
	}
	if got := stderr.String(); got != "err\n" {
		t.Errorf("stderr = %q, expected %q", got, "err\n")
	}
}

func TestExecArgvEnvDir(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	var stdout bytes.Buffer
	req := Request{
		Argv: []string{"sh", "-c", `pwd; printf '%s|%s\n' "$FOO" "$1"`, "sh", "two words"},
		Env:  []string{"FOO=bar baz"},
		Dir:  "/tmp",
	}
	st, err := c.Exec(testCtx(t), req, nil, &stdout, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 0 {
		t.Errorf("status = %+v, expected exit code 0", st)
	}
	if want := "/tmp\nbar baz|two words\n"; stdout.String() != want {
		t.Errorf("stdout = %q, expected %q", stdout.String(), want)
	}
}

func TestExecStdinForwarded(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	// More than two Windows, so flow control in both directions takes part.
	in := make([]byte, 3*Window+12345)
	rand.Read(in)
	var stdout bytes.Buffer
	st, err := c.Exec(testCtx(t), Request{Argv: []string{"cat"}}, bytes.NewReader(in), &stdout, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 0 {
		t.Errorf("status = %+v, expected exit code 0", st)
	}
	if !bytes.Equal(stdout.Bytes(), in) {
		t.Errorf("cat returned %d bytes that differ from the %d bytes of stdin", stdout.Len(), len(in))
	}
}

func TestExecStdinEOFWithoutInput(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	var stdout bytes.Buffer
	st, err := c.Exec(testCtx(t), Request{Shell: "wc -c; echo done"}, nil, &stdout, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 0 {
		t.Errorf("status = %+v, expected exit code 0", st)
	}
	if got := strings.Fields(stdout.String()); len(got) != 2 || got[0] != "0" || got[1] != "done" {
		t.Errorf("stdout = %q, expected \"0\\ndone\\n\"", stdout.String())
	}
}

func TestExecSignalDeath(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	ctx := testCtx(t)

	s, err := c.Start(ctx, Request{Argv: []string{"sleep", "30"}}, nil, nil, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if s.PID() == 0 {
		t.Errorf("PID is 0, expected the guest PID")
	}
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	st, err := s.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.Code != 128+15 || st.Signal != 15 {
		t.Errorf("status = %+v, expected code 143 and signal 15", st)
	}

	st, err = c.Exec(ctx, Request{Shell: "kill -KILL $$"}, nil, nil, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 137 || st.Signal != 9 {
		t.Errorf("status = %+v, expected code 137 and signal 9", st)
	}
}

func TestExecNotFound(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	_, err := c.Exec(testCtx(t), Request{Argv: []string{"no-such-program-spore"}}, nil, nil, nil)
	var rerr *RemoteError
	if !errors.As(err, &rerr) {
		t.Fatalf("err = %v, expected a RemoteError", err)
	}
	if rerr.Code != CodeExecFailed {
		t.Errorf("code = %d, expected CodeExecFailed", rerr.Code)
	}
	if !strings.Contains(rerr.Message, "no-such-program-spore") {
		t.Errorf("message %q does not name the program", rerr.Message)
	}
}

func TestExecInvalidRequest(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	for _, req := range []Request{
		{},
		{Argv: []string{"true"}, Shell: "true"},
		{Argv: []string{"true"}, Env: []string{"NOEQUALS"}},
		{Argv: []string{"true"}, Dir: "relative"},
		{Argv: []string{"true"}, Rows: 10},
	} {
		if _, err := c.Exec(testCtx(t), req, nil, nil, nil); err == nil {
			t.Errorf("Exec(%+v) succeeded, expected a validation error", req)
		}
	}
}

func TestPTYSession(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	ctx := testCtx(t)
	inR, inW := io.Pipe()
	var out syncBuffer
	s, err := c.Start(ctx, Request{Shell: "exec sh", TTY: true, Rows: 24, Cols: 80}, inR, &out, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}

	// Type a command and read its output through the terminal.
	io.WriteString(inW, "tty; echo sum-$((40+2))\n")
	waitFor(t, "the command output on the PTY", 5*time.Second, func() bool {
		return strings.Contains(out.String(), "sum-42")
	})
	if !strings.Contains(out.String(), "/dev/pts/") {
		t.Errorf("tty printed %q, expected a /dev/pts device", out.String())
	}

	// A window size change reaches the terminal.
	if err := s.Resize(40, 100); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	io.WriteString(inW, "echo size-$(stty size | tr ' ' x)\n")
	waitFor(t, "stty size output", 5*time.Second, func() bool {
		return strings.Contains(out.String(), "size-40x100")
	})

	io.WriteString(inW, "exit 7\n")
	st, err := s.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.Code != 7 {
		t.Errorf("status = %+v, expected exit code 7", st)
	}
	inW.Close()
}

func TestPTYStdinEOF(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	var out syncBuffer
	st, err := c.Exec(testCtx(t), Request{Shell: "cat; echo after-eof", TTY: true}, strings.NewReader("typed\n"), &out, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 0 {
		t.Errorf("status = %+v, expected exit code 0", st)
	}
	if !strings.Contains(out.String(), "typed") || !strings.Contains(out.String(), "after-eof") {
		t.Errorf("output = %q, expected the echoed input and after-eof", out.String())
	}
}

func TestPingReportsState(t *testing.T) {
	_, c := connect(t, ServerConfig{AgentVersion: "test-1"})
	h := c.Hello()
	if h.Version != ProtocolVersion {
		t.Errorf("version = %d, expected %d", h.Version, ProtocolVersion)
	}
	if h.Info.AgentVersion != "test-1" || !h.Info.Ready {
		t.Errorf("hello info = %+v, expected version test-1 and ready", h.Info)
	}
	ctx := testCtx(t)
	s, err := c.Start(ctx, Request{Argv: []string{"sleep", "30"}}, nil, nil, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	info, err := c.Ping(ctx)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if info.Running != 1 || info.Sessions != 1 {
		t.Errorf("ping info = %+v, expected 1 running session", info)
	}
	s.Signal(syscall.SIGKILL)
	if _, err := s.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestManySessionsInParallel(t *testing.T) {
	_, c := connect(t, ServerConfig{})
	ctx := testCtx(t)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var out bytes.Buffer
			st, err := c.Exec(ctx, Request{Argv: []string{"sh", "-c", "seq 1 2000; exit $0", string(rune('0' + i))}}, nil, &out, nil)
			switch {
			case err != nil:
				errs <- err
			case st.Code != i:
				errs <- errors.New("wrong exit code " + st.String())
			case out.Len() != 8893:
				errs <- errors.New("wrong output length " + out.String()[:20])
			default:
				errs <- nil
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestDialTimesOutOnSilentGuest dials a stream nobody reads, as before the
// guest has booted: Dial must return when its context ends.
func TestDialTimesOutOnSilentGuest(t *testing.T) {
	p := newPipePair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, p.hostR, p.hostW, ClientOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial = %v, expected a deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial returned after %v, expected about 300ms", d)
	}
}

func TestPoweroffRequest(t *testing.T) {
	called := make(chan struct{})
	_, c := connect(t, ServerConfig{Poweroff: func() { close(called) }})
	if err := c.Poweroff(testCtx(t)); err != nil {
		t.Fatalf("Poweroff: %v", err)
	}
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatal("the Server's Poweroff hook was not called")
	}

	_, c2 := connect(t, ServerConfig{})
	err := c2.Poweroff(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "poweroff is not supported") {
		t.Errorf("Poweroff without a hook = %v, expected a not supported error", err)
	}
}

func TestExecSeesIdentityEnv(t *testing.T) {
	applied := func(ctx context.Context, m *SetIdentity) error { return nil }
	_, c := connect(t, ServerConfig{ApplyIdentity: applied})
	err := c.SetIdentity(testCtx(t), &SetIdentity{Generation: "g1-ab-3", Env: []string{"SPORE_CHILD_INDEX=3", "ROLE=child"}})
	if err != nil {
		t.Fatalf("SetIdentity: %v", err)
	}

	var stdout bytes.Buffer
	req := Request{Argv: []string{"sh", "-c", `echo "$SPORE_GENERATION_ID $SPORE_CHILD_INDEX $ROLE"`}, Env: []string{"ROLE=override"}}
	if _, err := c.Exec(testCtx(t), req, nil, &stdout, nil); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if want := "g1-ab-3 3 override\n"; stdout.String() != want {
		t.Errorf("stdout = %q, expected %q", stdout.String(), want)
	}
}

func TestFreezeRequest(t *testing.T) {
	var calls []bool
	var mu sync.Mutex
	_, c := connect(t, ServerConfig{Freeze: func(ctx context.Context, thaw bool) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, thaw)
		if thaw && len(calls) > 2 {
			return errors.New("thaw failed")
		}
		return nil
	}})
	if err := c.Freeze(testCtx(t)); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if err := c.Thaw(testCtx(t)); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	err := c.Thaw(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "thaw failed") {
		t.Errorf("failing Thaw = %v, expected the hook's error", err)
	}
	mu.Lock()
	if !reflect.DeepEqual(calls, []bool{false, true, true}) {
		t.Errorf("hook calls (thaw flags) = %v, expected [false true true]", calls)
	}
	mu.Unlock()

	_, c2 := connect(t, ServerConfig{})
	err = c2.Freeze(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "freeze is not supported") {
		t.Errorf("Freeze without a hook = %v, expected a not supported error", err)
	}
}
