package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleMessages has one message of every type with non-zero fields.
func sampleMessages() []Message {
	info := AgentInfo{AgentVersion: "v1", BootID: "b", Generation: "g1", Hostname: "h", Uptime: 5, Running: 1, Sessions: 2, Ready: true}
	si := SessionInfo{ID: 7, PID: 42, TTY: true, Exited: true, Status: ExitStatus{Code: 137, Signal: 9},
		StdinOffset: 3, StdinClosed: true, Stdout: StreamPos{1, 2}, Stderr: StreamPos{3, 4}}
	return []Message{
		&Hello{MinVersion: 1, MaxVersion: 2, Nonce: 99},
		&HelloReply{Version: 1, Nonce: 99, Info: info, Sessions: []SessionInfo{si}},
		&Ping{Nonce: 1},
		&Pong{Nonce: 1, Info: info},
		&Exec{Session: 7, Argv: []string{"ls", "-l"}, Env: []string{"A=b"}, Dir: "/tmp", Stdin: true, TTY: true, Rows: 24, Cols: 80},
		&Started{Session: 7, PID: 42},
		&Data{Session: 7, Stream: Stderr, Offset: 10, Data: []byte("abc")},
		&Ack{Session: 7, Stream: Stdin, Offset: 10, Rewind: true},
		&CloseStdin{Session: 7, Offset: 11},
		&Resize{Session: 7, Rows: 50, Cols: 132},
		&Signal{Session: 7, Signal: 15},
		&Exit{Session: 7, Status: ExitStatus{Code: 3}, StdoutEnd: 5, StderrEnd: 6},
		&Attach{Session: 7, StdoutFrom: 1, StderrFrom: 2},
		&Status{Info: si},
		&Release{Session: 7},
		&Error{Session: 7, Code: CodeExecFailed, Message: "nope"},
		&Poweroff{Nonce: 3},
		&SetIdentity{Generation: "gen-2", TimeUnixNs: 1e18, Hostname: "child-1", Entropy: []byte{1, 2, 3}, Env: []string{"X=1"}},
		&IdentityDone{Generation: "gen-2", Error: "hook failed"},
		&Freeze{Nonce: 4, Thaw: true},
		&FreezeDone{Nonce: 4, Error: "not frozen"},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var stream []byte
	msgs := sampleMessages()
	for _, m := range msgs {
		stream = AppendFrame(stream, m)
	}
	fr := NewFrameReader(bytes.NewReader(stream))
	for _, want := range msgs {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame for %s: %v", want.Type(), err)
		}
		got, err := Decode(f)
		if err != nil {
			t.Fatalf("Decode %s: %v", want.Type(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s decoded as %+v, expected %+v", want.Type(), got, want)
		}
	}
	if _, err := fr.ReadFrame(); err != io.EOF {
		t.Errorf("ReadFrame at the end = %v, expected io.EOF", err)
	}
}

func TestFrameCorruptionSkipped(t *testing.T) {
	a := AppendFrame(nil, &Ping{Nonce: 1})
	b := AppendFrame(nil, &Data{Session: 1, Stream: Stdout, Data: []byte("payload")})
	c := AppendFrame(nil, &Ping{Nonce: 3})
	b[HeaderSize+3] ^= 0xff // flip a body byte of the middle frame
	stream := append(append(append([]byte("garbage"), a...), b...), c...)

	fr := NewFrameReader(bytes.NewReader(stream))
	if _, err := fr.ReadFrame(); !errors.Is(err, ErrCorruptFrame) {
		t.Fatalf("first ReadFrame = %v, expected ErrCorruptFrame for the leading garbage", err)
	}
	f, err := fr.ReadFrame()
	if err != nil || f.Type != TypePing {
		t.Fatalf("ReadFrame = %v, %v; expected the first Ping", f.Type, err)
	}
	_, err = fr.ReadFrame()
	if !errors.Is(err, ErrCorruptFrame) || !strings.Contains(err.Error(), "body CRC") {
		t.Fatalf("ReadFrame = %v, expected a body CRC error", err)
	}
	f, err = fr.ReadFrame()
	if err != nil || f.Type != TypePing {
		t.Fatalf("ReadFrame = %v, %v; expected the last Ping after resync", f.Type, err)
	}
	m, _ := Decode(f)
	if m.(*Ping).Nonce != 3 {
		t.Errorf("nonce = %d, expected 3", m.(*Ping).Nonce)
	}
}

// rawHeader builds a header with valid CRCs for any length.
func rawHeader(typ MsgType, length uint32, body []byte) []byte {
	h := make([]byte, HeaderSize)
	h[0], h[1], h[2] = 'S', 'P', byte(typ)
	binary.BigEndian.PutUint32(h[4:8], length)
	binary.BigEndian.PutUint32(h[8:12], crc32.Checksum(body, castagnoli))
	binary.BigEndian.PutUint32(h[12:16], crc32.Checksum(h[:12], castagnoli))
	return h
}

func TestFrameOversizeRejected(t *testing.T) {
	stream := append(rawHeader(TypeData, MaxBody+1, nil), AppendFrame(nil, &Ping{Nonce: 5})...)
	fr := NewFrameReader(bytes.NewReader(stream))
	_, err := fr.ReadFrame()
	if !errors.Is(err, ErrCorruptFrame) || !strings.Contains(err.Error(), "exceeds the limit of 131072 bytes") {
		t.Fatalf("ReadFrame = %v, expected an oversize error naming the limit", err)
	}
	if f, err := fr.ReadFrame(); err != nil || f.Type != TypePing {
		t.Fatalf("ReadFrame after the oversize header = %v, %v; expected the Ping", f.Type, err)
	}

	fw := NewFrameWriter(io.Discard)
	err = fw.WriteFrame(&Exec{Session: 1, Argv: []string{strings.Repeat("a", MaxBody)}})
	if err == nil || !strings.Contains(err.Error(), "exceeds the frame limit") {
		t.Errorf("WriteFrame of an oversize Exec = %v, expected a frame limit error", err)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	body := func(m Message) []byte { return AppendFrame(nil, m)[HeaderSize:] }
	cases := []struct {
		name string
		f    Frame
		want string
	}{
		{"unknown type", Frame{Type: 200}, "unknown message type 200"},
		{"trailing bytes", Frame{Type: TypePing, Body: append(body(&Ping{}), 0)}, "1 trailing bytes"},
		{"short body", Frame{Type: TypeStarted, Body: []byte{0, 0, 0, 1}}, "pid needs 4 bytes, 0 left"},
		{"session zero", Frame{Type: TypeRelease, Body: []byte{0, 0, 0, 0}}, "session ID 0 is reserved"},
		{"bad magic", Frame{Type: TypeHello, Body: body(&Hello{})[:0]}, "magic length needs 4 bytes"},
		{"bad bool", Frame{Type: TypeAck, Body: []byte{0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2}}, "rewind is 2"},
		{"bad stream", Frame{Type: TypeData, Body: body(&Data{Session: 1, Stream: 9})}, "stream is 9"},
		{"data too long", Frame{Type: TypeData, Body: body(&Data{Session: 1, Data: make([]byte, MaxDataLen+1)})}, "data is 32769 bytes, the limit is 32768"},
		{"argv too many", Frame{Type: TypeExec, Body: body(&Exec{Session: 1, Argv: make([]string, MaxArgs+1)})}, "argv has 1025 entries"},
		{"exec empty", Frame{Type: TypeExec, Body: body(&Exec{Session: 1})}, "no command"},
		{"signal zero", Frame{Type: TypeSignal, Body: body(&Signal{Session: 1})}, "signal 0 is out of range"},
		{"exit mismatch", Frame{Type: TypeExit, Body: body(&Exit{Session: 1, Status: ExitStatus{Code: 1, Signal: 9}})}, "exit code 1 does not match signal 9"},
		{"hostname chars", Frame{Type: TypeSetIdentity, Body: body(&SetIdentity{Generation: "g", Hostname: "a b"})}, "hostname \"a b\""},
		{"stream pos", Frame{Type: TypeStatus, Body: body(&Status{Info: SessionInfo{ID: 1, Stdout: StreamPos{5, 4}}})}, "stdout start 5 is beyond its end 4"},
	}
	for _, tc := range cases {
		_, err := Decode(tc.f)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, expected ErrMalformed", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %q, expected it to contain %q", tc.name, err, tc.want)
		}
	}
}

// TestServerRejectsBadFrames writes raw bytes to a Server and checks that
// it names each problem and keeps serving.
func TestServerRejectsBadFrames(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	p := newPipePair(t)
	serve(t, srv, p)
	fr := NewFrameReader(p.hostR)
	next := func() Message {
		t.Helper()
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		m, err := Decode(f)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		return m
	}
	write := func(b []byte) {
		t.Helper()
		if _, err := p.hostW.Write(b); err != nil {
			t.Fatal(err)
		}
	}

	// Requests before Hello are ignored; garbage is skipped.
	write(AppendFrame(nil, &Ping{Nonce: 1}))
	write([]byte("\x00\x01garbage SP\x00"))
	write(AppendFrame(nil, &Hello{MinVersion: 1, MaxVersion: 1, Nonce: 2}))
	if m, ok := next().(*HelloReply); !ok || m.Nonce != 2 {
		t.Fatalf("reply = %+v, expected HelloReply with nonce 2", m)
	}

	// A frame whose body does not decode gets an Error naming the field.
	bad := AppendFrame(nil, &Exec{Session: 1, Argv: []string{"true"}})
	badBody := append([]byte(nil), bad[HeaderSize:]...)
	binary.BigEndian.PutUint32(badBody[4:8], MaxArgs+5) // argv count
	write(append(rawHeader(TypeExec, uint32(len(badBody)), badBody), badBody...))
	m := next()
	e, ok := m.(*Error)
	if !ok || e.Code != CodeProtocol || !strings.Contains(e.Message, "argv has 1029 entries, the limit is 1024") {
		t.Fatalf("reply = %+v, expected a protocol Error about the argv count", m)
	}

	// An oversize header is skipped, and the stream still works.
	write(rawHeader(TypeData, MaxBody+100, nil))
	write(AppendFrame(nil, &Ping{Nonce: 3}))
	if m, ok := next().(*Pong); !ok || m.Nonce != 3 {
		t.Fatalf("reply = %+v, expected Pong with nonce 3", m)
	}

	// Requests for unknown sessions name the session.
	write(AppendFrame(nil, &Signal{Session: 77, Signal: 9}))
	if e, ok := next().(*Error); !ok || e.Code != CodeUnknownSession || !strings.Contains(e.Message, "session 77 not found") {
		t.Fatalf("reply = %+v, expected an unknown session Error", e)
	}

	// A version the agent does not speak is rejected with both ranges.
	write(AppendFrame(nil, &Hello{MinVersion: 7, MaxVersion: 9, Nonce: 4}))
	if e, ok := next().(*Error); !ok || e.Code != CodeVersion || !strings.Contains(e.Message, "7..9") {
		t.Fatalf("reply = %+v, expected a version Error", e)
	}
}

func TestDialVersionMismatch(t *testing.T) {
	p := newPipePair(t)
	go func() {
		fr := NewFrameReader(p.guestR)
		fw := NewFrameWriter(p.guestW)
		for {
			f, err := fr.ReadFrame()
			if errors.Is(err, ErrCorruptFrame) {
				continue
			}
			if err != nil {
				return
			}
			if f.Type == TypeHello {
				fw.WriteFrame(&Error{Code: CodeVersion, Message: "client speaks protocol versions 1..1, this agent speaks 2..2"})
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, p.hostR, p.hostW, ClientOptions{})
	if err == nil || !strings.Contains(err.Error(), "this agent speaks 2..2") {
		t.Fatalf("Dial = %v, expected the version error", err)
	}
}

func TestFrameZeroPaddingSkipped(t *testing.T) {
	stream := append(make([]byte, PreambleSize), AppendFrame(nil, &Ping{Nonce: 1})...)
	stream = append(append(stream, 0, 0, 0), AppendFrame(nil, &Ping{Nonce: 2})...)
	fr := NewFrameReader(bytes.NewReader(stream))
	for _, nonce := range []uint64{1, 2} {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame = %v, expected Ping %d with the zeros skipped silently", err, nonce)
		}
		if m, _ := Decode(f); m.(*Ping).Nonce != nonce {
			t.Errorf("nonce = %d, expected %d", m.(*Ping).Nonce, nonce)
		}
	}
	if fr.Skipped != uint64(PreambleSize+3) {
		t.Errorf("Skipped = %d, expected %d", fr.Skipped, PreambleSize+3)
	}
}
