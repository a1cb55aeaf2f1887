package disk

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

func openStore(t testing.TB) (*objects.Store, *refs.Refs) {
	t.Helper()
	s, err := objects.Open(t.TempDir(), objects.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, refs.New(s.Backend())
}

// writeImage writes an image of size bytes with random data in some chunks
// and zeros in the others, and returns its content.
func writeImage(t testing.TB, path string, size int, seed uint64) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	data := make([]byte, size)
	for off := 0; off < size; off += objects.DefaultChunkSize {
		if rng.IntN(3) == 0 {
			continue
		}
		end := min(off+objects.DefaultChunkSize, size)
		for i := off; i < end; i++ {
			data[i] = byte(rng.Uint32())
		}
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// extract returns the image of an index.
func extract(t *testing.T, s *objects.Store, index objects.ID) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "extract.img")
	if err := s.ExtractIndexToFile(index, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestImportSkipsKnownFile(t *testing.T) {
	s, r := openStore(t)
	path := filepath.Join(t.TempDir(), "root.img")
	want := writeImage(t, path, 40*objects.DefaultChunkSize+4096, 1)

	first, err := Import(s, r, path)
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached || first.Store.ChunksWritten == 0 {
		t.Fatalf("first import: cached %v, %d chunks written; want a full import", first.Cached, first.Store.ChunksWritten)
	}
	if !strings.HasPrefix(first.Ref, ImageRefPrefix) {
		t.Fatalf("ref %s is not under %s", first.Ref, ImageRefPrefix)
	}
	if got := extract(t, s, first.Index); !bytes.Equal(got, want) {
		t.Fatal("the imported index does not read back as the file")
	}

	second, err := Import(s, r, path)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Cached || second.Index != first.Index {
		t.Fatalf("second import: cached %v, index %s; want cached index %s", second.Cached, second.Index.Short(), first.Index.Short())
	}

	// A new modification time makes the file a new version: it is read
	// again, but its chunks are stored already.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	third, err := Import(s, r, path)
	if err != nil {
		t.Fatal(err)
	}
	if third.Cached {
		t.Fatal("import after a change of modification time was cached")
	}
	if third.Index != first.Index || third.Store.ChunksWritten != 0 || third.Store.NodesWritten != 0 {
		t.Fatalf("re-import wrote %d chunks and %d nodes, index %s; want nothing new and index %s",
			third.Store.ChunksWritten, third.Store.NodesWritten, third.Index.Short(), first.Index.Short())
	}
}

func TestImportRejectsBadSize(t *testing.T) {
	s, r := openStore(t)
	path := filepath.Join(t.TempDir(), "odd.img")
	if err := os.WriteFile(path, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Import(s, r, path)
	if err == nil || !strings.Contains(err.Error(), "multiple of 512") {
		t.Fatalf("import of a 1000-byte file: got %v, want a size error", err)
	}
	list, err := r.List(ImageRefPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("a failed import left refs: %v", list)
	}
}

// model applies the same writes to a Disk and to a byte slice.
type model struct {
	disk *Disk
	want []byte
}

func (m *model) write(t *testing.T, off int, data []byte) {
	t.Helper()
	n, err := m.disk.WriteAt(data, int64(off))
	if err != nil || n != len(data) {
		t.Fatalf("write %d bytes at %d: wrote %d, %v", len(data), off, n, err)
	}
	copy(m.want[off:], data)
}

func (m *model) check(t *testing.T) {
	t.Helper()
	got := make([]byte, len(m.want))
	// Read in odd pieces, so reads cross chunk boundaries.
	for off := 0; off < len(got); off += 12288 + 512 {
		end := min(off+12288+512, len(got))
		if _, err := m.disk.ReadAt(got[off:end], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, m.want) {
		t.Fatal("disk content differs from the expected content")
	}
}

func TestWriteReadCommit(t *testing.T) {
	s, r := openStore(t)
	path := filepath.Join(t.TempDir(), "root.img")
	size := 20*objects.DefaultChunkSize + 8192
	base := writeImage(t, path, size, 2)
	imported, err := Import(s, r, path)
	if err != nil {
		t.Fatal(err)
	}

	d, err := Open(s, imported.Index, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m := &model{disk: d, want: append([]byte(nil), base...)}
	m.check(t)

	// A sector inside chunk 1, a write across chunks 3 and 4, a whole
	// chunk 7 and the short last chunk.
	m.write(t, objects.DefaultChunkSize+512, bytes.Repeat([]byte{0xaa}, 512))
	m.write(t, 4*objects.DefaultChunkSize-1024, bytes.Repeat([]byte{0xbb}, 2048))
	m.write(t, 7*objects.DefaultChunkSize, bytes.Repeat([]byte{0xcc}, objects.DefaultChunkSize))
	m.write(t, size-512, bytes.Repeat([]byte{0xdd}, 512))
	m.check(t)
	if got := d.DirtyChunks(); got != 5 {
		t.Fatalf("dirty chunks: got %d, want 5", got)
	}

	index, stats, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if stats.DirtyChunks != 5 || stats.Store.ChunksWritten > 5 {
		t.Fatalf("commit: %d dirty chunks, %d written; want 5 and at most 5", stats.DirtyChunks, stats.Store.ChunksWritten)
	}
	if d.Base() != index || d.DirtyChunks() != 0 {
		t.Fatalf("after commit: base %s, %d dirty chunks; want base %s and none", d.Base().Short(), d.DirtyChunks(), index.Short())
	}
	if got := extract(t, s, index); !bytes.Equal(got, m.want) {
		t.Fatal("the committed index differs from the disk content")
	}
	m.check(t)

	// A commit without writes stores nothing and keeps the index.
	again, stats, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if again != index || stats.DirtyChunks != 0 || stats.Store.BytesWritten != 0 {
		t.Fatalf("empty commit: index %s, %d dirty chunks, %d bytes; want %s, 0, 0", again.Short(), stats.DirtyChunks, stats.Store.BytesWritten, index.Short())
	}
}

func TestChildrenDiverge(t *testing.T) {
	s, r := openStore(t)
	path := filepath.Join(t.TempDir(), "root.img")
	base := writeImage(t, path, 16*objects.DefaultChunkSize, 3)
	imported, err := Import(s, r, path)
	if err != nil {
		t.Fatal(err)
	}

	// The parent writes a file, then three children open its commit and
	// each writes its own chunk.
	parent, err := Open(s, imported.Index, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pm := &model{disk: parent, want: append([]byte(nil), base...)}
	pm.write(t, 2*objects.DefaultChunkSize, []byte(strings.Repeat("parent", 100)[:512]))
	parentIndex, _, err := parent.Commit()
	if err != nil {
		t.Fatal(err)
	}
	parent.Close()

	var children []*model
	var indexes []objects.ID
	for i := range 3 {
		d, err := Open(s, parentIndex, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		cm := &model{disk: d, want: append([]byte(nil), pm.want...)}
		cm.check(t)
		cm.write(t, (5+i)*objects.DefaultChunkSize+4096, bytes.Repeat([]byte{byte('a' + i)}, 4096))
		index, stats, err := d.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if stats.DirtyChunks != 1 || stats.Store.ChunksWritten != 1 {
			t.Fatalf("child %d: %d dirty chunks, %d chunks written; want 1 and 1", i, stats.DirtyChunks, stats.Store.ChunksWritten)
		}
		children = append(children, cm)
		indexes = append(indexes, index)
	}
	for i, cm := range children {
		cm.check(t)
		if got := extract(t, s, indexes[i]); !bytes.Equal(got, cm.want) {
			t.Fatalf("child %d: committed index differs from its writes", i)
		}
	}
	if bytes.Equal(children[0].want, children[1].want) {
		t.Fatal("children 0 and 1 have the same content; their writes did not diverge")
	}
}

func TestReadOnlyAndRange(t *testing.T) {
	s, r := openStore(t)
	path := filepath.Join(t.TempDir(), "root.img")
	writeImage(t, path, 4*objects.DefaultChunkSize, 4)
	imported, err := Import(s, r, path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(s, imported.Index, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	if _, err := d.WriteAt(make([]byte, 512), 0); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write to a read-only disk: got %v", err)
	}
	if _, err := d.ReadAt(make([]byte, 1024), d.Size()-512); err == nil || !strings.Contains(err.Error(), "beyond the disk size") {
		t.Fatalf("read past the end: got %v", err)
	}
	if _, err := d.ReadAt(make([]byte, 512), -512); err == nil {
		t.Fatal("read at a negative offset succeeded")
	}
}

func TestOpenMissingIndex(t *testing.T) {
	s, _ := openStore(t)
	missing := objects.Hash(objects.KindTree, []byte("no such index"))
	_, err := Open(s, missing, Options{})
	if err == nil || !strings.Contains(err.Error(), missing.Short()) {
		t.Fatalf("open of a missing index: got %v, want an error naming %s", err, missing.Short())
	}
}
