package objects

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestImportExtractRoundTrip(t *testing.T) {
	s, _ := openTestDB(t)
	for _, size := range []int{0, 1, 4096, 64<<10 + 17, 5 << 20} {
		img := vmImage(size, uint64(size))
		root, stats, err := s.ImportImage(bytes.NewReader(img), int64(size), IndexOptions{ChunkSize: 16 << 10, Fanout: 4})
		if err != nil {
			t.Fatalf("size %d: import: %v", size, err)
		}
		if got, _, err := s.IndexSize(root); err != nil || got != uint64(size) {
			t.Fatalf("size %d: IndexSize = %d, %v", size, got, err)
		}
		out := filepath.Join(t.TempDir(), "img")
		if err := s.ExtractIndexToFile(root, out); err != nil {
			t.Fatalf("size %d: extract: %v", size, err)
		}
		back, _ := os.ReadFile(out)
		if !bytes.Equal(back, img) {
			t.Fatalf("size %d: extracted image differs", size)
		}
		if stats.Chunks != int64((size+16<<10-1)/(16<<10)) {
			t.Errorf("size %d: stats.Chunks = %d", size, stats.Chunks)
		}
	}
}

func TestImportAllZeroIsHoles(t *testing.T) {
	s, _ := openTestDB(t)
	img := make([]byte, 1<<20)
	root, stats, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{ChunkSize: 64 << 10, Fanout: 4})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksWritten != 0 || stats.Holes != 16 {
		t.Fatalf("stats = %+v, want 16 holes and no chunk written", stats)
	}
	if stats.NodesWritten != 1 {
		t.Fatalf("nodes written = %d, want only the root", stats.NodesWritten)
	}
	c, err := s.ReadChunk(root, 700<<10)
	if err != nil || !c.Hole || c.Offset != 640<<10 || c.Len != 64<<10 {
		t.Fatalf("ReadChunk = %+v, %v; want a hole at 640 KiB", c, err)
	}
}

func TestReimportWritesOnlyChanges(t *testing.T) {
	s, _ := openTestDB(t)
	const chunk = 16 << 10
	img := vmImage(8<<20, 7)
	opts := IndexOptions{ChunkSize: chunk, Fanout: 16}
	root1, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), opts)
	if err != nil {
		t.Fatal(err)
	}
	img[3*chunk+5] ^= 0xff
	img[300*chunk] ^= 0x01
	root2, stats, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if root1 == root2 {
		t.Fatal("changed image has the same root")
	}
	if stats.ChunksWritten != 2 {
		t.Errorf("chunks written = %d, want 2", stats.ChunksWritten)
	}
	// 512 chunks, fan-out 16: two leaves, two level-1 nodes and the root.
	if stats.NodesWritten > 5 {
		t.Errorf("nodes written = %d, want at most 5", stats.NodesWritten)
	}
}

func TestUpdateIndexMatchesImport(t *testing.T) {
	s, _ := openTestDB(t)
	const chunk = 16 << 10
	img := vmImage(3<<20+100, 9)
	opts := IndexOptions{ChunkSize: chunk, Fanout: 8}
	parent, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), opts)
	if err != nil {
		t.Fatal(err)
	}
	changes := map[uint64][]byte{}
	for _, k := range []int{0, 1, 77, 150, 192} {
		off := k * chunk
		end := min(off+chunk, len(img))
		data := bytes.Repeat([]byte{byte(k + 1)}, end-off)
		if k == 77 {
			data = make([]byte, end-off)
		}
		copy(img[off:], data)
		changes[uint64(off)] = data
	}
	updated, stats, err := s.UpdateIndex(parent, changes)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if updated != fresh {
		t.Fatalf("UpdateIndex root %s differs from a fresh import %s", updated.Short(), fresh.Short())
	}
	if stats.Chunks != 5 || stats.Holes != 1 {
		t.Errorf("stats = %+v, want 5 chunks with 1 hole", stats)
	}
	c, err := s.ReadChunk(updated, 150*chunk+3)
	if err != nil || c.Hole || !bytes.Equal(c.Data, img[150*chunk:151*chunk]) {
		t.Fatalf("ReadChunk after update = %+v, %v", c.Offset, err)
	}
}

func TestUpdateIndexRejectsBadChanges(t *testing.T) {
	s, _ := openTestDB(t)
	img := vmImage(1<<20, 3)
	root, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for name, changes := range map[string]map[uint64][]byte{
		"unaligned": {100: make([]byte, 64<<10)},
		"outside":   {1 << 20: make([]byte, 64<<10)},
		"short":     {0: make([]byte, 10)},
	} {
		if _, _, err := s.UpdateIndex(root, changes); err == nil {
			t.Errorf("%s: UpdateIndex accepted an invalid change", name)
		}
	}
}
