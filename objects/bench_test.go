package objects

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// benchImageSize is the size of the synthetic memory image of the store
// benchmarks: half zero pages, a quarter random, a quarter program bytes.
const benchImageSize = 1 << 30

var (
	benchImageOnce sync.Once
	benchImageDir  string
	benchImagePath string
	benchImageErr  error
)

// benchImage writes the synthetic image once per benchmark run, next to
// the stores the benchmarks create, and returns its path.
func benchImage(b *testing.B) string {
	b.Helper()
	benchImageOnce.Do(func() {
		benchImageDir, benchImageErr = os.MkdirTemp("", "spore-bench-")
		if benchImageErr != nil {
			return
		}
		benchImagePath = filepath.Join(benchImageDir, "memory.img")
		benchImageErr = os.WriteFile(benchImagePath, vmImage(benchImageSize, 1), 0o644)
	})
	if benchImageErr != nil {
		b.Fatal(benchImageErr)
	}
	return benchImagePath
}

// benchStoreDir returns a fresh store directory on the disk of the image.
func benchStoreDir(b *testing.B) string {
	benchImage(b)
	dir, err := os.MkdirTemp(benchImageDir, "store-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dirSize returns the disk space that files under dir use, in bytes.
// badger's preallocated files count only with the blocks written.
func dirSize(b *testing.B, dir string) int64 {
	out, err := exec.Command("du", "-sB1", dir).Output()
	if err != nil {
		b.Fatalf("du %s: %v", dir, err)
	}
	var n int64
	fmt.Sscan(string(out), &n)
	return n
}

// timeCp copies src with cp and fsyncs the copy, and returns the time.
func timeCp(b *testing.B, src, dir string) time.Duration {
	dst := filepath.Join(dir, "cp-copy")
	defer os.Remove(dst)
	start := time.Now()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v: %s", err, out)
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return time.Since(start)
}

// benchStore is a store opened for a benchmark: the database in this
// process (owner), used directly or through a client over the socket.
type benchStore struct {
	*Store
	owner *Store
}

func openBenchStore(b *testing.B, dir string, viaSocket bool) *benchStore {
	owner, err := Open(dir, Options{DB: DBOptions{MinFreeBytes: -1}})
	if err != nil {
		b.Fatal(err)
	}
	bs := &benchStore{Store: owner, owner: owner}
	if viaSocket {
		if bs.Store, err = Open(dir, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(bs.closeAll)
	return bs
}

// closeAll closes the client and the owner; it may be called again.
func (bs *benchStore) closeAll() {
	if bs.Store != bs.owner {
		bs.Store.Close()
	}
	bs.owner.Close()
}

// sync flushes the database to disk, as a capture does when it moves a ref.
func (bs *benchStore) sync(b *testing.B) {
	if err := bs.owner.Backend().(*DB).Sync(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkImport measures a full import of the 1 GiB image, including a
// final fsync, against cp of the same file plus fsync on the same disk.
func BenchmarkImport(b *testing.B) {
	for _, mode := range []string{"inprocess", "socket"} {
		b.Run(mode, func(b *testing.B) {
			img := benchImage(b)
			var importTime, cpTime time.Duration
			var stats WriteStats
			var stored int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := benchStoreDir(b)
				cpTime += timeCp(b, img, dir)
				s := openBenchStore(b, dir, mode == "socket")
				b.StartTimer()
				start := time.Now()
				_, st, err := s.ImportFile(img, IndexOptions{})
				if err != nil {
					b.Fatal(err)
				}
				s.sync(b)
				importTime += time.Since(start)
				b.StopTimer()
				stats = st
				s.closeAll()
				stored = dirSize(b, dir)
			}
			mb := float64(benchImageSize) / (1 << 20) * float64(b.N)
			nonZero := stats.Chunks - stats.Holes
			b.ReportMetric(mb/importTime.Seconds(), "import_MB/s")
			b.ReportMetric(mb/cpTime.Seconds(), "cp_MB/s")
			b.ReportMetric(cpTime.Seconds()/importTime.Seconds(), "import/cp")
			b.ReportMetric(float64(stats.BytesWritten)/float64(nonZero*DefaultChunkSize), "stored/nonzero")
			b.ReportMetric(float64(stored)/float64(nonZero*DefaultChunkSize), "disk/nonzero")
			b.ReportMetric(float64(stored)/(1<<20), "disk_MiB")
		})
	}
}

// BenchmarkReimport1Percent changes 1% of the image's chunks and stores
// the result twice: with UpdateIndex (the capture path, which has the
// list of dirty chunks) and with a full ImportImage that hashes everything.
func BenchmarkReimport1Percent(b *testing.B) {
	img := benchImage(b)
	data, err := os.ReadFile(img)
	if err != nil {
		b.Fatal(err)
	}
	dir := benchStoreDir(b)
	s := openBenchStore(b, dir, false)
	start := time.Now()
	parent, _, err := s.ImportImage(bytes.NewReader(data), int64(len(data)), IndexOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s.sync(b)
	fullTime := time.Since(start)

	r := rand.New(rand.NewPCG(9, 9))
	nChunks := len(data) / DefaultChunkSize
	var updateTime, reimportTime time.Duration
	var updStats, reStats WriteStats
	var changedBytes, diskGrowth int64
	for i := 0; i < b.N; i++ {
		changes := map[uint64][]byte{}
		for len(changes) < nChunks/100 {
			k := r.IntN(nChunks)
			off := k * DefaultChunkSize
			chunk := data[off : off+DefaultChunkSize]
			for j := 0; j < 64; j++ {
				chunk[r.IntN(len(chunk))] = byte(r.Uint32())
			}
			changes[uint64(off)] = chunk
		}
		changedBytes = int64(len(changes)) * DefaultChunkSize
		before := dirSize(b, dir)
		b.StartTimer()
		t0 := time.Now()
		root, st, err := s.UpdateIndex(parent, changes)
		if err != nil {
			b.Fatal(err)
		}
		s.sync(b)
		updateTime += time.Since(t0)
		b.StopTimer()
		diskGrowth = dirSize(b, dir) - before
		updStats = st

		// The same image again through a full import: only the same
		// chunks are new, but every chunk is read and hashed.
		for off := range changes {
			data[off] ^= 0x5a
		}
		t0 = time.Now()
		if _, reStats, err = s.ImportImage(bytes.NewReader(data), int64(len(data)), IndexOptions{}); err != nil {
			b.Fatal(err)
		}
		s.sync(b)
		reimportTime += time.Since(t0)
		parent = root
	}
	n := float64(b.N)
	b.ReportMetric(float64(updStats.BytesWritten)/float64(changedBytes), "update_written/changed")
	b.ReportMetric(float64(updStats.NodesWritten), "update_nodes")
	b.ReportMetric(float64(diskGrowth)/float64(changedBytes), "update_disk/changed")
	b.ReportMetric(updateTime.Seconds()/n/fullTime.Seconds(), "update_time/full")
	b.ReportMetric(reimportTime.Seconds()/n/fullTime.Seconds(), "reimport_time/full")
	b.ReportMetric(float64(reStats.ChunksWritten), "reimport_chunks_written")
}

// BenchmarkSharedTreeCommits writes 1000 commits that share one tree, as
// a fork of 1000 children does: each with its own synced ref update, or
// ("batch") with all refs in one atomic update.
func BenchmarkSharedTreeCommits(b *testing.B) {
	for _, mode := range []string{"inprocess", "socket", "socket-batch"} {
		b.Run(mode, func(b *testing.B) {
			dir := benchStoreDir(b)
			s := openBenchStore(b, dir, mode != "inprocess")
			img := vmImage(64<<20, 4)
			memory, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{})
			if err != nil {
				b.Fatal(err)
			}
			tree, _ := NewTree([]TreeEntry{{Name: "memory", Kind: KindTree, ID: memory}})
			treeID, err := s.PutTree(tree)
			if err != nil {
				b.Fatal(err)
			}
			base, err := s.PutCommit(&Commit{Tree: treeID, Message: "base"})
			if err != nil {
				b.Fatal(err)
			}
			const commits = 1000
			var total time.Duration
			var growth int64
			for i := 0; i < b.N; i++ {
				before := dirSize(b, dir)
				start := time.Now()
				var batch []RefUpdate
				for k := 0; k < commits; k++ {
					id, err := s.PutCommit(&Commit{Tree: treeID, Parents: []ID{base}, Generation: fmt.Sprintf("%d-%d", i, k), Time: time.Now(), Message: "fork child"})
					if err != nil {
						b.Fatal(err)
					}
					u := RefUpdate{Name: fmt.Sprintf("refs/forks/base/%d-%d", i, k), Expect: ExpectAbsent, New: RefValue{ID: id}, Reason: "fork"}
					if mode == "socket-batch" {
						batch = append(batch, u)
						continue
					}
					if err := s.Backend().UpdateRefs([]RefUpdate{u}); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Backend().UpdateRefs(batch); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				s.sync(b)
				growth = dirSize(b, dir) - before
			}
			b.ReportMetric(total.Seconds()*1e3/float64(commits*b.N), "ms/commit")
			b.ReportMetric(float64(growth)/commits, "bytes/commit")
		})
	}
}

// BenchmarkReadChunk reads chunks at random offsets of the 1 GiB image's
// index from 8 goroutines, as page faults of many vCPUs do. One operation
// is 20000 reads.
func BenchmarkReadChunk(b *testing.B) {
	for _, mode := range []string{"inprocess", "socket"} {
		b.Run(mode, func(b *testing.B) {
			s := openBenchStore(b, benchStoreDir(b), mode == "socket")
			root, _, err := s.ImportFile(benchImage(b), IndexOptions{})
			if err != nil {
				b.Fatal(err)
			}
			const reads, readers = 20000, 8
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				var wg sync.WaitGroup
				for g := 0; g < readers; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						r := rand.New(rand.NewPCG(uint64(i), uint64(g)))
						for k := 0; k < reads/readers; k++ {
							if _, err := s.ReadChunk(root, r.Uint64N(benchImageSize)); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(reads*b.N)/time.Since(start).Seconds(), "chunks/s")
		})
	}
}

// BenchmarkCodec compares s2 and zstd (fastest) on 64 KiB chunks of the
// synthetic image. spore stores chunks with s2.
func BenchmarkCodec(b *testing.B) {
	img := vmImage(64<<20, 6)
	var chunks [][]byte
	for off := 0; off < len(img); off += DefaultChunkSize {
		if c := img[off : off+DefaultChunkSize]; !isZero(c) {
			chunks = append(chunks, c)
		}
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	codecs := map[string]struct {
		compress   func([]byte) []byte
		decompress func([]byte) ([]byte, error)
	}{
		"s2":           {func(c []byte) []byte { return s2.Encode(nil, c) }, func(c []byte) ([]byte, error) { return s2.Decode(nil, c) }},
		"zstd-fastest": {func(c []byte) []byte { return enc.EncodeAll(c, nil) }, func(c []byte) ([]byte, error) { return dec.DecodeAll(c, nil) }},
	}
	for _, name := range []string{"s2", "zstd-fastest"} {
		codec := codecs[name]
		b.Run(name, func(b *testing.B) {
			var in, out int64
			var ctime, dtime time.Duration
			for i := 0; i < b.N; i++ {
				for _, c := range chunks {
					t0 := time.Now()
					z := codec.compress(c)
					ctime += time.Since(t0)
					t0 = time.Now()
					if _, err := codec.decompress(z); err != nil {
						b.Fatal(err)
					}
					dtime += time.Since(t0)
					in += int64(len(c))
					out += int64(len(z))
				}
			}
			b.ReportMetric(float64(in)/float64(out), "ratio")
			b.ReportMetric(float64(in)/(1<<20)/ctime.Seconds(), "compress_MB/s")
			b.ReportMetric(float64(in)/(1<<20)/dtime.Seconds(), "decompress_MB/s")
		})
	}
}

// BenchmarkChunkSize imports a 256 MiB image at several chunk sizes and
// reports import speed, objects per GiB and the time to read one chunk,
// which bounds the latency of a page fault.
func BenchmarkChunkSize(b *testing.B) {
	img := vmImage(256<<20, 8)
	for _, size := range []int{16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dK", size>>10), func(b *testing.B) {
			var importTime, readTime time.Duration
			var stats WriteStats
			reads := 0
			for i := 0; i < b.N; i++ {
				s := openBenchStore(b, benchStoreDir(b), false)
				start := time.Now()
				root, st, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{ChunkSize: size})
				if err != nil {
					b.Fatal(err)
				}
				importTime += time.Since(start)
				stats = st
				r := rand.New(rand.NewPCG(1, 1))
				start = time.Now()
				for k := 0; k < 2000; k++ {
					if _, err := s.ReadChunk(root, r.Uint64N(uint64(len(img)))); err != nil {
						b.Fatal(err)
					}
				}
				readTime += time.Since(start)
				reads += 2000
				s.Close()
			}
			b.ReportMetric(float64(len(img))*float64(b.N)/(1<<20)/importTime.Seconds(), "import_MB/s")
			b.ReportMetric(float64(stats.ChunksWritten+stats.NodesWritten)*4, "objects/GiB")
			b.ReportMetric(float64(readTime.Microseconds())/float64(reads), "us/chunk_read")
		})
	}
}
