package objects

import (
	"bytes"
	"testing"
	"time"
)

func FuzzDecodeRequest(f *testing.F) {
	id := Hash(KindChunk, []byte("x"))
	for _, r := range []*request{
		{op: opHello, version: protocolVersion},
		{op: opGet, id: id},
		{op: opHas, ids: []ID{id, ZeroID}},
		{op: opPut, objs: []StoredObject{{ID: id, Value: []byte{0, 1, 'x'}}}},
		{op: opListIDs, name: "ab", after: id, limit: 10},
		{op: opGetRef, name: "refs/heads/main"},
		{op: opUpdateRefs, updates: []RefUpdate{{Name: "HEAD", Expect: ExpectValue, Old: RefValue{ID: id}, New: RefValue{Symbolic: "refs/heads/x"}, Reason: "r", Time: time.Unix(1, 2)}}},
		{op: opGC, gc: GCOptions{Grace: time.Minute, DryRun: true}},
	} {
		f.Add(r.op, encodeRequest(r))
	}
	f.Fuzz(func(t *testing.T, op byte, payload []byte) {
		r, err := decodeRequest(op, payload)
		if err != nil {
			return
		}
		again, err := decodeRequest(op, encodeRequest(r))
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		if !bytes.Equal(encodeRequest(again), encodeRequest(r)) {
			t.Fatal("request encoding is not stable")
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	id := Hash(KindChunk, []byte("x"))
	f.Add(opHas, encodeResponse(opHas, &response{bools: []bool{true, false}}))
	f.Add(opListRefs, encodeResponse(opListRefs, &response{refs: []RefEntry{{Name: "refs/heads/a", Value: RefValue{ID: id}}}}))
	f.Add(opReflog, encodeResponse(opReflog, &response{reflog: []ReflogEntry{{Time: time.Unix(5, 0), New: id, Reason: "x"}}}))
	f.Add(opGC, encodeResponse(opGC, &response{gc: GCStats{Roots: 1, Deleted: 2}}))
	f.Add(opError, encodeError(&RefConflictError{Name: "refs/heads/a", Exists: true, Current: RefValue{ID: id}}))
	f.Fuzz(func(t *testing.T, op byte, payload []byte) {
		if op == opError {
			_ = decodeError(payload).Error()
			return
		}
		r, err := decodeResponse(op, payload)
		if err != nil {
			return
		}
		if _, err := decodeResponse(op, encodeResponse(op, r)); err != nil {
			t.Fatalf("re-encoded response does not decode: %v", err)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	writeFrame(&buf, opGet, make([]byte, 32))
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		op, payload, err := readFrame(bytes.NewReader(b))
		if err == nil {
			decodeRequest(op, payload)
		}
	})
}

func FuzzDecodeObject(f *testing.F) {
	id := Hash(KindChunk, []byte("x"))
	tree, _ := NewTree([]TreeEntry{{Name: "memory", Kind: KindTree, ID: id}, {Name: "vcpu/0", Kind: KindChunk, ID: id}})
	f.Add(Encode(KindTree, tree.Encode()))
	c := &Commit{Tree: id, Parents: []ID{id}, Platform: map[string]string{"arch": "arm64"}, Generation: "g", Time: time.Unix(1, 0), Author: "a", Message: "m"}
	f.Add(Encode(KindCommit, c.Encode()))
	node := &IndexNode{Level: 0, ChunkSize: 64 << 10, Fanout: 4, Size: 200 << 10, Children: []ID{id, ZeroID, id, ZeroID}}
	f.Add(Encode(KindTree, node.Encode()))
	f.Add(Encode(KindChunk, []byte("chunk")))
	f.Fuzz(func(t *testing.T, raw []byte) {
		kind, payload, err := Decode(raw)
		if err != nil {
			return
		}
		if !bytes.Equal(Encode(kind, payload), raw) {
			t.Fatal("Decode accepted a non-canonical encoding")
		}
		links, err := Links(kind, payload)
		if err != nil || kind == KindChunk {
			return
		}
		_ = links
		var again []byte
		switch kind {
		case KindCommit:
			c, _ := DecodeCommit(payload)
			again = c.Encode()
		case KindTree:
			if payload[0] == treeFormNamed {
				tr, _ := DecodeTree(payload)
				again = tr.Encode()
			} else {
				n, _ := DecodeIndexNode(payload)
				again = n.Encode()
			}
		}
		if !bytes.Equal(again, payload) {
			t.Fatalf("%s decodes but re-encodes differently", kind)
		}
	})
}

func FuzzDecodeStored(f *testing.F) {
	data := bytes.Repeat([]byte("compressible "), 100)
	id := Hash(KindChunk, data)
	f.Add(id[:], encodeStored(KindChunk, data))
	f.Add(id[:], []byte{codecS2, byte(KindChunk), 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, idBytes []byte, value []byte) {
		var want ID
		copy(want[:], idBytes)
		kind, payload, err := decodeStored(want, value)
		if err == nil && Hash(kind, payload) != want {
			t.Fatal("decodeStored returned content that does not match the ID")
		}
	})
}
