package objects

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// openServed opens a store that serves in this process and returns its
// socket path.
func openServed(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{DB: DBOptions{MinFreeBytes: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sock, err := socketPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, sock
}

func TestServerRejectsOtherProtocolVersion(t *testing.T) {
	_, sock := openServed(t)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := bufio.NewWriter(conn)
	writeFrame(w, opHello, encodeRequest(&request{op: opHello, version: 99}))
	w.Flush()
	op, payload, err := readFrame(conn)
	if err != nil {
		t.Fatal(err)
	}
	err = decodeError(payload)
	if op != opError || !strings.Contains(err.Error(), "protocol version 99") {
		t.Fatalf("hello with version 99: op %#x, %v", op, err)
	}
}

func TestServerSurvivesGarbageClient(t *testing.T) {
	s, sock := openServed(t)
	id, err := s.Put(KindChunk, []byte("still here"))
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{0, 0, 0, 5, opHello, 0xff, 0xff, 0xff, 0xff},
		{0xff, 0xff, 0xff, 0xff, 1},
		{0, 0, 0, 0},
	} {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(junk)
		conn.(*net.UnixConn).CloseWrite()
		var buf bytes.Buffer
		buf.ReadFrom(conn)
		conn.Close()
	}
	client, err := Open(s.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, data, err := client.Get(id); err != nil || string(data) != "still here" {
		t.Fatalf("Get after garbage clients = %q, %v", data, err)
	}
}

func TestFormatterRegistry(t *testing.T) {
	var called string
	RegisterFormatter("test-dev/*", func(w io.Writer, data []byte) error { called = "wildcard"; return nil })
	RegisterFormatter("test-dev/blk0", func(w io.Writer, data []byte) error { called = "exact"; return nil })
	FormatterFor("test-dev/blk0")(nil, nil)
	if called != "exact" {
		t.Errorf("exact pattern did not win: %s", called)
	}
	FormatterFor("test-dev/net0")(nil, nil)
	if called != "wildcard" {
		t.Errorf("wildcard pattern not used: %s", called)
	}
	var out bytes.Buffer
	if err := FormatterFor("unregistered")(&out, []byte{0, 0, 'a'}); err != nil || !strings.Contains(out.String(), "3 bytes, 2 of them zero") {
		t.Errorf("default formatter output %q, %v", out.String(), err)
	}
}
