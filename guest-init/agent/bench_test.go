package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"testing"
)

// BenchmarkStdoutThroughput measures output bytes per second from a guest
// process to the host writer over OS pipes, frames, CRCs and Acks included.
func BenchmarkStdoutThroughput(b *testing.B) {
	const size = 64 << 20
	_, c := connect(b, ServerConfig{Logger: log.New(io.Discard, "", 0)})
	b.SetBytes(size)
	for b.Loop() {
		st, err := c.Exec(context.Background(), Request{Shell: fmt.Sprintf("head -c %d /dev/zero", size)}, nil, io.Discard, nil)
		if err != nil || st.Code != 0 {
			b.Fatalf("Exec = %v, %v", st, err)
		}
	}
}

// BenchmarkStdinThroughput measures stdin bytes per second from the host
// to a guest process (cat to /dev/null).
func BenchmarkStdinThroughput(b *testing.B) {
	const size = 64 << 20
	_, c := connect(b, ServerConfig{Logger: log.New(io.Discard, "", 0)})
	in := make([]byte, size)
	b.SetBytes(size)
	for b.Loop() {
		st, err := c.Exec(context.Background(), Request{Shell: "cat > /dev/null"}, bytes.NewReader(in), nil, nil)
		if err != nil || st.Code != 0 {
			b.Fatalf("Exec = %v, %v", st, err)
		}
	}
}

// BenchmarkExecRoundTrip measures starting /bin/true and receiving its exit.
func BenchmarkExecRoundTrip(b *testing.B) {
	_, c := connect(b, ServerConfig{Logger: log.New(io.Discard, "", 0)})
	for b.Loop() {
		if _, err := c.Exec(context.Background(), Request{Argv: []string{"true"}}, nil, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
