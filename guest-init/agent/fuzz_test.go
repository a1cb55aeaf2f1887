package agent

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode rejects or accepts any body without
// panicking, and that an accepted message encodes back to the same body.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(uint8(m.Type()), AppendFrame(nil, m)[HeaderSize:])
	}
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		if len(body) > MaxBody {
			return
		}
		m, err := Decode(Frame{Type: MsgType(typ), Body: body})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again := AppendFrame(nil, m)[HeaderSize:]
		if !bytes.Equal(again, body) {
			t.Fatalf("%s re-encodes to %x, decoded from %x", m.Type(), again, body)
		}
		m2, err := Decode(Frame{Type: m.Type(), Body: again})
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("%s round trip: %v", m.Type(), err)
		}
	})
}

// FuzzFrameReader feeds arbitrary streams to a FrameReader. It must only
// return valid frames or errors, never panic, and make progress.
func FuzzFrameReader(f *testing.F) {
	var valid []byte
	for _, m := range sampleMessages() {
		valid = AppendFrame(valid, m)
	}
	f.Add(valid)
	f.Add(append([]byte("SP\x00\x00"), valid[7:]...))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, stream []byte) {
		fr := NewFrameReader(bytes.NewReader(stream))
		for i := 0; ; i++ {
			if i > len(stream)+1 {
				t.Fatalf("no progress after %d reads of a %d-byte stream", i, len(stream))
			}
			fh, err := fr.ReadFrame()
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return
			}
			if errors.Is(err, ErrCorruptFrame) {
				continue
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(fh.Body) > MaxBody {
				t.Fatalf("frame body of %d bytes passed the limit", len(fh.Body))
			}
			Decode(fh)
		}
	})
}
