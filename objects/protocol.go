package objects

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// The store protocol runs over a unix socket. Every message is a frame: a
// 4-byte big-endian length of the rest, an op byte and a payload. A client
// starts with a hello frame carrying protocolMagic and protocolVersion, and
// the server responds with its version or an error. After that the client sends
// one request frame and reads one response frame at a time. Payloads use
// the same uvarint, string and ID fields as object encodings.
const (
	protocolMagic   = "spore-store"
	protocolVersion = 1

	// maxFrame bounds a frame: one batch of objects or a listing.
	maxFrame = 96 << 20
)

// Request ops.
const (
	opHello      byte = 1
	opGet        byte = 2
	opHas        byte = 3
	opPut        byte = 4
	opListIDs    byte = 5
	opGetRef     byte = 6
	opListRefs   byte = 7
	opUpdateRefs byte = 8
	opReflog     byte = 9
	opGC         byte = 10
)

// Response ops and error codes.
const (
	opOK    byte = 0x80
	opError byte = 0x81

	errCodeOther    byte = 0
	errCodeNotFound byte = 1
	errCodeDiskFull byte = 2
	errCodeConflict byte = 3
	errCodeCorrupt  byte = 4
	errCodeClosed   byte = 5
)

// ErrProtocol is wrapped by errors about malformed protocol frames.
var ErrProtocol = errors.New("store protocol error")

// request is a decoded request frame; which fields are set depends on op.
type request struct {
	op      byte
	version uint16
	id      ID
	ids     []ID
	objs    []StoredObject
	name    string
	after   ID
	limit   int
	updates []RefUpdate
	gc      GCOptions
}

// response is a decoded OK response; which fields are set depends on the
// request op.
type response struct {
	version uint16
	value   []byte
	bools   []bool
	ids     []ID
	found   bool
	ref     RefValue
	refs    []RefEntry
	reflog  []ReflogEntry
	gc      GCStats
}

// writeFrame writes one frame. w should be buffered: the header and the
// payload are two writes.
func writeFrame(w io.Writer, op byte, payload []byte) error {
	if len(payload)+1 > maxFrame {
		return fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrProtocol, len(payload)+1, maxFrame)
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(payload)+1))
	hdr[4] = op
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame and returns its op and payload.
func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > maxFrame {
		return 0, nil, fmt.Errorf("%w: frame length %d is outside 1..%d", ErrProtocol, n, maxFrame)
	}
	payload := make([]byte, n-1)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[4], payload, nil
}

func encodeRefValueField(e *encoder, v RefValue) {
	if v == (RefValue{}) {
		e.bytes(nil)
		return
	}
	e.bytes(encodeRefValue(v))
}

func decodeRefValueField(d *decoder) RefValue {
	b := d.bytes()
	if d.err != nil || len(b) == 0 {
		return RefValue{}
	}
	v, err := decodeRefValue(b)
	if err != nil {
		d.fail("invalid ref value")
	}
	return v
}

// encodeRequest returns the op and payload of a request frame.
func encodeRequest(r *request) []byte {
	e := encoder{}
	switch r.op {
	case opHello:
		e.str(protocolMagic)
		e.uvarint(uint64(r.version))
	case opGet:
		e.id(r.id)
	case opHas:
		e.uvarint(uint64(len(r.ids)))
		for _, id := range r.ids {
			e.id(id)
		}
	case opPut:
		e.uvarint(uint64(len(r.objs)))
		for _, o := range r.objs {
			e.id(o.ID)
			e.bytes(o.Value)
		}
	case opListIDs:
		e.str(r.name)
		e.id(r.after)
		e.uvarint(uint64(r.limit))
	case opGetRef, opListRefs, opReflog:
		e.str(r.name)
	case opUpdateRefs:
		e.uvarint(uint64(len(r.updates)))
		for _, u := range r.updates {
			e.str(u.Name)
			e.byte1(byte(u.Expect))
			encodeRefValueField(&e, u.Old)
			e.byte1(boolByte(u.Delete))
			encodeRefValueField(&e, u.New)
			e.str(u.Reason)
			e.varint(u.Time.UnixNano())
		}
	case opGC:
		e.varint(int64(r.gc.Grace))
		e.byte1(boolByte(r.gc.DryRun))
		e.varint(int64(r.gc.ExpireReflogs))
	}
	return e.buf
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// decodeRequest parses a request frame from a client. The bytes are
// untrusted: every count is checked against the frame before allocation.
func decodeRequest(op byte, payload []byte) (*request, error) {
	d := decoder{buf: payload, sentinel: ErrProtocol}
	r := &request{op: op}
	switch op {
	case opHello:
		if magic := d.str(); d.err == nil && magic != protocolMagic {
			return nil, fmt.Errorf("%w: hello has magic %q, want %q", ErrProtocol, magic, protocolMagic)
		}
		v := d.uvarint()
		if v > 0xffff {
			d.fail("version %d out of range", v)
		}
		r.version = uint16(v)
	case opGet:
		r.id = d.id()
	case opHas:
		n := d.count(IDSize)
		r.ids = make([]ID, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			r.ids = append(r.ids, d.id())
		}
	case opPut:
		n := d.count(IDSize + 1)
		r.objs = make([]StoredObject, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			o := StoredObject{ID: d.id(), Value: d.bytes()}
			r.objs = append(r.objs, o)
		}
	case opListIDs:
		r.name = d.str()
		r.after = d.id()
		limit := d.uvarint()
		if limit > 1<<20 {
			d.fail("list limit %d exceeds %d", limit, 1<<20)
		}
		r.limit = int(limit)
	case opGetRef, opListRefs, opReflog:
		r.name = d.str()
	case opUpdateRefs:
		n := d.count(7)
		for i := 0; i < n && d.err == nil; i++ {
			u := RefUpdate{Name: d.str(), Expect: Expect(d.byte1())}
			u.Old = decodeRefValueField(&d)
			u.Delete = d.byte1() == 1
			u.New = decodeRefValueField(&d)
			u.Reason = d.str()
			u.Time = time.Unix(0, d.varint())
			if d.err == nil && u.Expect > ExpectValue {
				d.fail("unknown ref expectation %d", u.Expect)
			}
			r.updates = append(r.updates, u)
		}
	case opGC:
		r.gc.Grace = time.Duration(d.varint())
		r.gc.DryRun = d.byte1() == 1
		r.gc.ExpireReflogs = time.Duration(d.varint())
	default:
		return nil, fmt.Errorf("%w: unknown request op %d", ErrProtocol, op)
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("request op %d: %w", op, d.err)
	}
	return r, nil
}

// encodeResponse returns the payload of an OK response to a request op.
func encodeResponse(op byte, r *response) []byte {
	e := encoder{}
	switch op {
	case opHello:
		e.uvarint(uint64(r.version))
	case opGet:
		e.bytes(r.value)
	case opHas:
		e.uvarint(uint64(len(r.bools)))
		for _, b := range r.bools {
			e.byte1(boolByte(b))
		}
	case opListIDs:
		e.uvarint(uint64(len(r.ids)))
		for _, id := range r.ids {
			e.id(id)
		}
	case opGetRef:
		e.byte1(boolByte(r.found))
		encodeRefValueField(&e, r.ref)
	case opListRefs:
		e.uvarint(uint64(len(r.refs)))
		for _, ref := range r.refs {
			e.str(ref.Name)
			encodeRefValueField(&e, ref.Value)
		}
	case opReflog:
		e.uvarint(uint64(len(r.reflog)))
		for _, ent := range r.reflog {
			e.bytes(encodeReflogEntry(ent))
		}
	case opGC:
		for _, v := range []int64{int64(r.gc.Roots), int64(r.gc.Reachable), int64(r.gc.KeptRecent), int64(r.gc.Deleted), r.gc.DeletedBytes, int64(r.gc.MissingReached), int64(r.gc.ExpiredReflogEntries)} {
			e.varint(v)
		}
	}
	return e.buf
}

// decodeResponse parses the payload of an OK response to a request op.
func decodeResponse(op byte, payload []byte) (*response, error) {
	d := decoder{buf: payload, sentinel: ErrProtocol}
	r := &response{}
	switch op {
	case opHello:
		v := d.uvarint()
		if v > 0xffff {
			d.fail("version %d out of range", v)
		}
		r.version = uint16(v)
	case opGet:
		r.value = d.bytes()
	case opHas:
		n := d.count(1)
		r.bools = make([]bool, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			r.bools = append(r.bools, d.byte1() == 1)
		}
	case opListIDs:
		n := d.count(IDSize)
		r.ids = make([]ID, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			r.ids = append(r.ids, d.id())
		}
	case opGetRef:
		r.found = d.byte1() == 1
		r.ref = decodeRefValueField(&d)
	case opListRefs:
		n := d.count(2)
		for i := 0; i < n && d.err == nil; i++ {
			r.refs = append(r.refs, RefEntry{Name: d.str(), Value: decodeRefValueField(&d)})
		}
	case opReflog:
		n := d.count(1)
		for i := 0; i < n && d.err == nil; i++ {
			b := d.bytes()
			if d.err != nil {
				break
			}
			ent, err := decodeReflogEntry(b)
			if err != nil {
				d.fail("invalid reflog entry")
				break
			}
			r.reflog = append(r.reflog, ent)
		}
	case opGC:
		vals := make([]int64, 7)
		for i := range vals {
			vals[i] = d.varint()
		}
		r.gc = GCStats{Roots: int(vals[0]), Reachable: int(vals[1]), KeptRecent: int(vals[2]), Deleted: int(vals[3]), DeletedBytes: vals[4], MissingReached: int(vals[5]), ExpiredReflogEntries: int(vals[6])}
	case opPut, opUpdateRefs:
	default:
		return nil, fmt.Errorf("%w: response to unknown op %d", ErrProtocol, op)
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("response to op %d: %w", op, d.err)
	}
	return r, nil
}

// encodeError turns a backend error into an error frame payload that keeps
// its category across the socket.
func encodeError(err error) []byte {
	e := encoder{}
	var conflict *RefConflictError
	switch {
	case errors.As(err, &conflict):
		e.byte1(errCodeConflict)
		e.str(err.Error())
		e.str(conflict.Name)
		e.byte1(boolByte(conflict.Exists))
		encodeRefValueField(&e, conflict.Current)
		e.byte1(byte(conflict.Expect))
		encodeRefValueField(&e, conflict.Old)
		return e.buf
	case errors.Is(err, ErrNotFound):
		e.byte1(errCodeNotFound)
	case errors.Is(err, ErrDiskFull):
		e.byte1(errCodeDiskFull)
	case errors.Is(err, ErrCorrupt):
		e.byte1(errCodeCorrupt)
	case errors.Is(err, ErrClosed):
		e.byte1(errCodeClosed)
	default:
		e.byte1(errCodeOther)
	}
	e.str(err.Error())
	return e.buf
}

// remoteError is an error that the store server reported.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// decodeError parses an error frame payload.
func decodeError(payload []byte) error {
	d := decoder{buf: payload, sentinel: ErrProtocol}
	code := d.byte1()
	msg := d.str()
	if d.err != nil {
		return fmt.Errorf("store server error: %w", d.err)
	}
	switch code {
	case errCodeConflict:
		c := &RefConflictError{Name: d.str(), Exists: d.byte1() == 1}
		c.Current = decodeRefValueField(&d)
		c.Expect = Expect(d.byte1())
		c.Old = decodeRefValueField(&d)
		d.end()
		if d.err != nil {
			return fmt.Errorf("store server error: %w", d.err)
		}
		return c
	case errCodeNotFound:
		return &remoteError{msg, ErrNotFound}
	case errCodeDiskFull:
		return &remoteError{msg, ErrDiskFull}
	case errCodeCorrupt:
		return &remoteError{msg, ErrCorrupt}
	case errCodeClosed:
		return &remoteError{msg, ErrClosed}
	}
	return &remoteError{msg, nil}
}
