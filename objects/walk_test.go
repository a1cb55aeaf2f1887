package objects

import (
	"bytes"
	"errors"
	"testing"
)

func TestClosureCopiesCommitToAnotherStore(t *testing.T) {
	src, _ := openTestDB(t)
	dst, _ := openTestDB(t)
	img := vmImage(2<<20, 21)
	memory, _, err := src.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{ChunkSize: 16 << 10, Fanout: 4})
	if err != nil {
		t.Fatal(err)
	}
	vcpu, _ := src.Put(KindChunk, []byte("registers"))
	tree, _ := NewTree([]TreeEntry{{Name: "memory", Kind: KindTree, ID: memory}, {Name: "vcpu/0", Kind: KindChunk, ID: vcpu}})
	treeID, err := src.PutTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := src.PutCommit(&Commit{Tree: treeID, Message: "base"})
	child, err := src.PutCommit(&Commit{Tree: treeID, Parents: []ID{base}, Message: "child"})
	if err != nil {
		t.Fatal(err)
	}

	// Copy in closure order reversed, children before parents, as an
	// importer that checks links would.
	var order []Link
	if err := src.Closure([]ID{child}, func(l Link) error { order = append(order, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if order[0].ID != child || order[0].Kind != KindCommit {
		t.Fatalf("closure starts with %+v, want the root commit", order[0])
	}
	var batch []RawObject
	for i := len(order) - 1; i >= 0; i-- {
		raw, err := src.GetRaw(order[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := dst.PutRaw(order[i].ID, raw); err != nil {
				t.Fatal(err)
			}
			continue
		}
		batch = append(batch, RawObject{ID: order[i].ID, Raw: raw})
	}
	if err := dst.PutRawBatch(batch); err != nil {
		t.Fatal(err)
	}
	report, err := dst.Fsck(map[string]ID{"child": child})
	if err != nil || len(report.Problems) != 0 || report.Objects != len(order) {
		t.Fatalf("fsck of the copy: %v, %+v, want %d objects", err, report, len(order))
	}
	c, err := dst.ReadChunk(memory, 1<<20)
	if err != nil || (!c.Hole && !bytes.Equal(c.Data, img[c.Offset:c.Offset+uint64(c.Len)])) {
		t.Fatalf("ReadChunk from the copy: %v", err)
	}
}

func TestPutRawRejectsTamperedObject(t *testing.T) {
	s, _ := openTestDB(t)
	raw := Encode(KindChunk, []byte("original"))
	id := Hash(KindChunk, []byte("original"))
	tampered := bytes.Clone(raw)
	tampered[len(tampered)-1] ^= 1
	if err := s.PutRaw(id, tampered); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("PutRaw of tampered bytes = %v, want ErrCorrupt", err)
	}
	if ok, _ := s.Has(id); ok {
		t.Fatal("tampered object was stored")
	}
	bad := &Tree{Entries: []TreeEntry{{Name: "../x", Kind: KindChunk, ID: id}}}
	payload := bad.Encode()
	if err := s.PutRaw(Hash(KindTree, payload), Encode(KindTree, payload)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("PutRaw of a tree with an invalid name = %v, want ErrCorrupt", err)
	}
}
