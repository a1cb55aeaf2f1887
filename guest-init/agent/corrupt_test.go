package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"sync"
	"testing"
)

// corruptWriter flips the bits of the byte at stream offset At, once, and
// passes everything else through.
type corruptWriter struct {
	mu   sync.Mutex
	w    io.Writer
	off  int
	At   int
	done bool
}

func (c *corruptWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.done && c.At >= c.off && c.At < c.off+len(p) {
		q := append([]byte(nil), p...)
		q[c.At-c.off] ^= 0xff
		c.done = true
		p = q
	}
	c.off += len(p)
	return c.w.Write(p)
}

func (c *corruptWriter) flipped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// TestCorruptOutputRecovered flips one byte inside the output the guest
// sends. The Client must drop the frame, request the bytes again and still
// deliver the exact output.
func TestCorruptOutputRecovered(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	p := newPipePair(t)
	cw := &corruptWriter{w: p.guestW, At: 300_000}
	go srv.Serve(context.Background(), p.guestR, cw)
	c := dial(t, p)

	in := make([]byte, 1<<20)
	rand.Read(in)
	var out bytes.Buffer
	st, err := c.Exec(testCtx(t), Request{Argv: []string{"cat"}}, bytes.NewReader(in), &out, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 0 {
		t.Errorf("status = %+v, expected exit code 0", st)
	}
	if !cw.flipped() {
		t.Fatalf("the stream ended before byte %d, so nothing was corrupted", cw.At)
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Errorf("output after corruption has %d bytes that differ from the %d bytes sent", out.Len(), len(in))
	}
}

// TestCorruptStdinRecovered flips one byte inside the stdin the host
// sends. The Server must drop the frame, request the bytes again and still
// write the exact input to the process.
func TestCorruptStdinRecovered(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	p := newPipePair(t)
	go srv.Serve(context.Background(), p.guestR, p.guestW)
	cw := &corruptWriter{w: p.hostW, At: PreambleSize + 200_000}
	ctx := testCtx(t)
	c, err := Dial(ctx, p.hostR, cw, ClientOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()

	in := make([]byte, 1<<20)
	rand.Read(in)
	var out bytes.Buffer
	st, err := c.Exec(ctx, Request{Shell: "sha256sum | cut -d' ' -f1"}, bytes.NewReader(in), &out, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 0 {
		t.Errorf("status = %+v, expected exit code 0", st)
	}
	if !cw.flipped() {
		t.Fatalf("the stream ended before byte %d, so nothing was corrupted", cw.At)
	}
	want := sha256Hex(in) + "\n"
	if out.String() != want {
		t.Errorf("sha256 of the stdin the process read = %q, expected %q", out.String(), want)
	}
}
