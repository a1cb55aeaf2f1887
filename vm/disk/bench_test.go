package disk

import (
	"path/filepath"
	"testing"

	"github.com/spore-vm/spore/objects"
)

// BenchmarkChildDiskCommit measures what the store writes for a child disk
// after a small write. 16 children of one 64 MiB image each write a 4 KiB
// file block, a 512-byte inode and a 4 KiB journal block in three chunks,
// as a small file written on ext4 would, and commit. The image is
// synthetic: random bytes in two thirds of its chunks.
func BenchmarkChildDiskCommit(b *testing.B) {
	const (
		imageSize = 64 << 20
		children  = 16
	)
	s, r := openStore(b)
	path := filepath.Join(b.TempDir(), "root.img")
	writeImage(b, path, imageSize, 5)
	imported, err := Import(s, r, path)
	if err != nil {
		b.Fatal(err)
	}

	block := make([]byte, 4096)
	for i := range block {
		block[i] = byte(i*7 + 1)
	}
	var total CommitStats
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for c := range children {
			d, err := Open(s, imported.Index, Options{})
			if err != nil {
				b.Fatal(err)
			}
			// Each child writes different bytes, as children writing their
			// own file would.
			block[0], block[1] = byte(n), byte(c)
			writes := []struct {
				off  int64
				data []byte
			}{
				{300*objects.DefaultChunkSize + 8192, block},
				{objects.DefaultChunkSize + 1024, block[:512]},
				{700*objects.DefaultChunkSize + 4096, block},
			}
			for _, w := range writes {
				if _, err := d.WriteAt(w.data, w.off); err != nil {
					b.Fatal(err)
				}
			}
			_, stats, err := d.Commit()
			if err != nil {
				b.Fatal(err)
			}
			d.Close()
			total.DirtyChunks += stats.DirtyChunks
			total.DirtyBytes += stats.DirtyBytes
			addWriteStats(&total.Store, stats.Store)
		}
	}
	b.StopTimer()

	perChild := float64(b.N * children)
	b.ReportMetric(float64(total.Store.BytesWritten)/perChild, "stored_bytes/child")
	b.ReportMetric(float64(total.Store.ChunksWritten)/perChild, "chunks/child")
	b.ReportMetric(float64(total.Store.NodesWritten)/perChild, "index_nodes/child")
	b.ReportMetric(float64(total.Store.BytesWritten)/perChild/imageSize, "stored/image")
	b.ReportMetric(float64(imported.Store.BytesWritten), "image_stored_bytes")
}
