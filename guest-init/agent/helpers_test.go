package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"os"
	"sync"
	"testing"
	"time"
)

// pipePair is one bidirectional stream made of two OS pipes.
type pipePair struct {
	guestR, guestW *os.File // the Server's ends
	hostR, hostW   *os.File // the Client's ends
}

func newPipePair(t testing.TB) *pipePair {
	t.Helper()
	hr, gw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	gr, hw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &pipePair{guestR: gr, guestW: gw, hostR: hr, hostW: hw}
	t.Cleanup(func() {
		for _, f := range []*os.File{hr, gw, gr, hw} {
			f.Close()
		}
	})
	return p
}

// testLogger logs to t until the test ends and drops lines after that,
// because Server goroutines outlive the test that started them.
func testLogger(t testing.TB) *log.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return log.New(w, "", 0)
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

// serve runs srv on p in the background and returns a channel with Serve's
// result.
func serve(t testing.TB, srv *Server, p *pipePair) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), p.guestR, p.guestW) }()
	return errc
}

// connect starts a Server on a new pipe pair and dials it.
func connect(t testing.TB, cfg ServerConfig) (*Server, *Client) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv := NewServer(cfg)
	p := newPipePair(t)
	serve(t, srv, p)
	c := dial(t, p)
	return srv, c
}

func dial(t testing.TB, p *pipePair) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, p.hostR, p.hostW, ClientOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
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

// waitFor polls cond until it returns true or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ io.Writer = (*syncBuffer)(nil)

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
