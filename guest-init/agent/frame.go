package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// Frame layout (all integers big-endian):
//
//	offset size field
//	0      2    magic "SP"
//	2      1    message type
//	3      1    flags (reserved, must be 0)
//	4      4    body length
//	8      4    CRC-32C of the body
//	12     4    CRC-32C of bytes 0..12 of the header
//	16     n    body
const (
	// HeaderSize is the size of a frame header in bytes.
	HeaderSize = 16

	// MaxBody is the maximum body length of one frame in bytes.
	MaxBody = 128 << 10

	// PreambleSize is the number of zero bytes a Client writes before its
	// first Hello. Zero bytes between frames are padding that readers skip
	// without an error. A Server may have been inside a frame of the
	// previous host when the VM was captured. It then takes at most
	// HeaderSize+MaxBody of these bytes to complete that frame, finds its
	// CRC wrong, and skips the rest of the zeros to the Hello.
	PreambleSize = HeaderSize + MaxBody
)

var (
	frameMagic = [2]byte{'S', 'P'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// ErrCorruptFrame is wrapped by every FrameReader error about bytes that are
// not a valid frame. The reader has skipped those bytes, so the caller may
// keep reading.
var ErrCorruptFrame = errors.New("corrupt agent frame")

// Frame is one decoded frame: a message type and its still-encoded body.
type Frame struct {
	Type MsgType
	Body []byte
}

// FrameReader reads frames from an untrusted byte stream. Zero bytes
// between frames are skipped as padding. After a corrupt frame it returns
// an error that wraps ErrCorruptFrame and, on the next call, scans forward
// for the next valid header.
type FrameReader struct {
	r       *bufio.Reader
	resync  bool
	Skipped uint64 // bytes discarded while looking for a valid header
}

// NewFrameReader returns a FrameReader that reads from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 2*HeaderSize+MaxBody)}
}

// ReadFrame returns the next valid frame. Errors from the underlying reader
// are returned as they are (io.EOF at a frame boundary, io.ErrUnexpectedEOF
// inside one). The returned body is a fresh slice owned by the caller.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	for {
		hdr, err := fr.r.Peek(HeaderSize)
		if err != nil {
			if err == io.EOF && len(hdr) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
		if hdr[0] == 0 {
			// Zero bytes between frames are padding, such as the
			// preamble a Client writes before its Hello.
			fr.skipZeros()
			continue
		}
		herr := checkHeader(hdr)
		if herr != nil {
			if fr.resync {
				fr.skipToMagic()
				continue
			}
			fr.discard(1)
			fr.resync = true
			return Frame{}, herr
		}
		typ := MsgType(hdr[2])
		n := int(binary.BigEndian.Uint32(hdr[4:8]))
		sum := binary.BigEndian.Uint32(hdr[8:12])

		// Peek at the whole frame so that a bad body costs one byte, not the
		// frame: valid frames that a cut frame swallowed are found again.
		whole, err := fr.r.Peek(HeaderSize + n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
		if got := crc32.Checksum(whole[HeaderSize:], castagnoli); got != sum {
			fr.discard(1)
			if fr.resync {
				continue
			}
			fr.resync = true
			return Frame{}, fmt.Errorf("%w: body CRC is %#08x, header expects %#08x (type %d, %d bytes)",
				ErrCorruptFrame, got, sum, typ, n)
		}
		body := make([]byte, n)
		copy(body, whole[HeaderSize:])
		if _, err := fr.r.Discard(HeaderSize + n); err != nil {
			return Frame{}, err
		}
		fr.resync = false
		return Frame{Type: typ, Body: body}, nil
	}
}

// skipToMagic discards at least one byte and then every buffered byte
// before the next possible start of a magic.
func (fr *FrameReader) skipToMagic() {
	fr.discard(1)
	buf, _ := fr.r.Peek(fr.r.Buffered())
	i := bytes.IndexByte(buf, frameMagic[0])
	if i < 0 {
		i = len(buf)
	}
	fr.discard(i)
}

// skipZeros discards the zero bytes at the start of the buffer.
func (fr *FrameReader) skipZeros() {
	buf, _ := fr.r.Peek(fr.r.Buffered())
	n := 0
	for n < len(buf) && buf[n] == 0 {
		n++
	}
	fr.discard(max(n, 1))
}

func (fr *FrameReader) discard(n int) {
	m, _ := fr.r.Discard(n)
	fr.Skipped += uint64(m)
}

// checkHeader validates a 16-byte header without looking at the body.
func checkHeader(h []byte) error {
	if h[0] != frameMagic[0] || h[1] != frameMagic[1] {
		return fmt.Errorf("%w: magic is %#02x%02x, expected \"SP\"", ErrCorruptFrame, h[0], h[1])
	}
	if got, want := crc32.Checksum(h[:12], castagnoli), binary.BigEndian.Uint32(h[12:16]); got != want {
		return fmt.Errorf("%w: header CRC is %#08x, expected %#08x", ErrCorruptFrame, got, want)
	}
	if h[3] != 0 {
		return fmt.Errorf("%w: flags are %#02x, expected 0", ErrCorruptFrame, h[3])
	}
	if n := binary.BigEndian.Uint32(h[4:8]); n > MaxBody {
		return fmt.Errorf("%w: body length %d exceeds the limit of %d bytes", ErrCorruptFrame, n, MaxBody)
	}
	return nil
}

// FrameWriter writes whole frames. It is safe for concurrent use: each
// frame is written with one Write call under a mutex, so frames never
// interleave.
type FrameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewFrameWriter returns a FrameWriter that writes to w.
func NewFrameWriter(w io.Writer) *FrameWriter {
	return &FrameWriter{w: w}
}

// WriteFrame encodes m and writes it as one frame.
func (fw *FrameWriter) WriteFrame(m Message) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()

	fw.buf = AppendFrame(fw.buf[:0], m)
	if len(fw.buf)-HeaderSize > MaxBody {
		return fmt.Errorf("agent: %s message of %d bytes exceeds the frame limit of %d bytes",
			m.Type(), len(fw.buf)-HeaderSize, MaxBody)
	}
	_, err := fw.w.Write(fw.buf)
	return err
}

// AppendFrame appends the frame of m (header and body) to b. It does not
// check MaxBody, so a caller that writes the result must.
func AppendFrame(b []byte, m Message) []byte {
	start := len(b)
	b = append(b, make([]byte, HeaderSize)...)
	e := encoder{b: b}
	m.encode(&e)
	b = e.b
	h := b[start : start+HeaderSize]
	body := b[start+HeaderSize:]
	h[0], h[1] = frameMagic[0], frameMagic[1]
	h[2] = byte(m.Type())
	h[3] = 0
	binary.BigEndian.PutUint32(h[4:8], uint32(len(body)))
	binary.BigEndian.PutUint32(h[8:12], crc32.Checksum(body, castagnoli))
	binary.BigEndian.PutUint32(h[12:16], crc32.Checksum(h[:12], castagnoli))
	return b
}
