package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/s2"
	"github.com/spore-vm/spore/objects"
)

// Pack layer format, version 1 (media type MediaTypePack):
//
//	magic    "SPOREPK1"
//	record*  object ID (32 bytes), codec byte, uvarint length, data
//
// Records run to the end of the blob. The blob's sha256 digest in the
// manifest detects truncation.
//
// The data of a record is the object's canonical encoding (objects.Encode),
// stored as is (codecRaw) or as one s2 block (codecS2). Carrying the ID
// lets the reader verify every object against the ID that its parent names
// and report the object by ID when the bytes do not match.
const packMagic = "SPOREPK1"

const (
	codecRaw byte = 0
	codecS2  byte = 1
)

// maxPackRecord bounds the data length of one record: an object of
// objects.MaxObjectSize plus its header, and room for s2's worst case.
const maxPackRecord = objects.MaxObjectSize + 1024

// ErrPackCorrupt is wrapped by errors about pack layers that do not decode.
var ErrPackCorrupt = errors.New("corrupt pack layer")

// packWriter writes a pack layer.
type packWriter struct {
	w       io.Writer
	scratch []byte
}

// newPackWriter starts a pack layer by writing its magic.
func newPackWriter(w io.Writer) (*packWriter, error) {
	if _, err := w.Write([]byte(packMagic)); err != nil {
		return nil, err
	}
	return &packWriter{w: w}, nil
}

// add appends one object in canonical encoding. The s2 form is used only
// when it is smaller, so random memory costs one codec byte, not a copy.
func (p *packWriter) add(id objects.ID, raw []byte) error {
	codec, data := codecRaw, raw
	p.scratch = s2.Encode(p.scratch[:cap(p.scratch)], raw)
	if len(p.scratch) < len(raw) {
		codec, data = codecS2, p.scratch
	}

	record := make([]byte, 0, objects.IDSize+1+binary.MaxVarintLen64)
	record = append(record, id[:]...)
	record = append(record, codec)
	record = binary.AppendUvarint(record, uint64(len(data)))
	if _, err := p.w.Write(record); err != nil {
		return err
	}
	_, err := p.w.Write(data)
	return err
}

// packReader reads the records of a pack layer one at a time.
type packReader struct {
	r       *bufio.Reader
	buf     []byte
	decoded []byte
}

func newPackReader(r io.Reader) (*packReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(packMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, fmt.Errorf("%w: missing header: %v", ErrPackCorrupt, err)
	}
	if string(magic) != packMagic {
		return nil, fmt.Errorf("%w: magic %q, expected %q", ErrPackCorrupt, magic, packMagic)
	}
	return &packReader{r: br}, nil
}

// next returns the next object and the canonical encoding the pack claims
// for it, or io.EOF after the last record. The returned slice is reused by
// the next call. The caller verifies the encoding against the ID.
func (p *packReader) next() (objects.ID, []byte, error) {
	var id objects.ID
	n, err := io.ReadFull(p.r, id[:])
	if n == 0 && err == io.EOF {
		return id, nil, io.EOF
	}
	if err != nil {
		return id, nil, fmt.Errorf("%w: truncated record: %v", ErrPackCorrupt, err)
	}
	codec, err := p.r.ReadByte()
	if err != nil {
		return id, nil, fmt.Errorf("%w: object %s: truncated record: %v", ErrPackCorrupt, id, err)
	}
	length, err := binary.ReadUvarint(p.r)
	if err != nil {
		return id, nil, fmt.Errorf("%w: object %s: record length: %v", ErrPackCorrupt, id, err)
	}
	if length > maxPackRecord {
		return id, nil, fmt.Errorf("%w: object %s: record of %d bytes is more than the maximum %d", ErrPackCorrupt, id, length, maxPackRecord)
	}
	if uint64(cap(p.buf)) < length {
		p.buf = make([]byte, length)
	}
	p.buf = p.buf[:length]
	if _, err := io.ReadFull(p.r, p.buf); err != nil {
		return id, nil, fmt.Errorf("%w: object %s: truncated record: %v", ErrPackCorrupt, id, err)
	}

	switch codec {
	case codecRaw:
		return id, p.buf, nil
	case codecS2:
		size, err := s2.DecodedLen(p.buf)
		if err != nil || size > maxPackRecord {
			return id, nil, fmt.Errorf("%w: object %s: invalid s2 block (%v)", objects.ErrCorrupt, id, err)
		}
		p.decoded, err = s2.Decode(p.decoded[:cap(p.decoded)], p.buf)
		if err != nil {
			return id, nil, fmt.Errorf("%w: object %s: invalid s2 block: %v", objects.ErrCorrupt, id, err)
		}
		return id, p.decoded, nil
	default:
		return id, nil, fmt.Errorf("%w: object %s: unknown codec %d", ErrPackCorrupt, id, codec)
	}
}

// decodePack returns the objects of a whole pack, verified against their
// IDs. It is the decoder that fuzzing and tests exercise.
func decodePack(data []byte) ([]objects.RawObject, error) {
	p, err := newPackReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out []objects.RawObject
	for {
		id, raw, err := p.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if _, _, err := objects.DecodeVerified(id, raw); err != nil {
			return nil, err
		}
		out = append(out, objects.RawObject{ID: id, Raw: bytes.Clone(raw)})
	}
}
