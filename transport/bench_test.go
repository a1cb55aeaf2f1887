package transport

import (
	"bytes"
	"io"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/testsuite/registry"
)

// benchMemorySize is the memory image of the base commit in the transport
// benchmarks: a quarter zero pages, half random, a quarter program bytes.
const benchMemorySize = 256 << 20

// BenchmarkPushPull pushes a base commit to a real registry and pulls it
// into an empty store, and in the same run uploads and downloads one blob
// of the same bytes with plain OCI blob requests. The ratios compare them.
func BenchmarkPushPull(b *testing.B) {
	reg := registry.Start(b)
	src := openTestStore(b)
	base := makeBase(b, src, benchMemorySize)

	for i := 0; i < b.N; i++ {
		repo := openRegistryRepo(b, reg, "bench/push-"+strconv.Itoa(i))

		start := time.Now()
		pushed, err := Push(background, src.Store, repo, base, PushOptions{Tag: "v1"})
		if err != nil {
			b.Fatal(err)
		}
		pushTime := time.Since(start)

		dst := openTestStore(b)
		start = time.Now()
		if _, err := Pull(background, dst.Store, dst.refs, repo, "v1", PullOptions{Ref: "refs/heads/base"}); err != nil {
			b.Fatal(err)
		}
		pullTime := time.Since(start)

		// The same bytes as one plain blob, with a trailer that makes it a
		// new blob for the registry.
		plain := concatLayers(b, src, base)
		plain = append(plain, []byte("plain-"+strconv.Itoa(i))...)
		desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(plain), Size: int64(len(plain))}
		plainRepo := openRegistryRepo(b, reg, "bench/plain-"+strconv.Itoa(i))
		start = time.Now()
		if err := plainRepo.Push(background, desc, bytes.NewReader(plain)); err != nil {
			b.Fatal(err)
		}
		plainUp := time.Since(start)
		start = time.Now()
		rc, err := plainRepo.Fetch(background, desc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
		plainDown := time.Since(start)

		mb := float64(pushed.Total.Bytes) / 1e6
		b.ReportMetric(mb, "MB_sent")
		b.ReportMetric(mb/pushTime.Seconds(), "push_MB/s")
		b.ReportMetric(mb/pullTime.Seconds(), "pull_MB/s")
		b.ReportMetric(float64(len(plain))/1e6/plainUp.Seconds(), "plain_up_MB/s")
		b.ReportMetric(float64(len(plain))/1e6/plainDown.Seconds(), "plain_down_MB/s")
		b.ReportMetric(plainUp.Seconds()/pushTime.Seconds(), "push/plain")
		b.ReportMetric(plainDown.Seconds()/pullTime.Seconds(), "pull/plain")
	}
}

// concatLayers returns the bytes of every pack layer of commit id.
func concatLayers(b *testing.B, s *testStore, id objects.ID) []byte {
	b.Helper()
	builder, err := newBuilder(s.Store, "")
	if err != nil {
		b.Fatal(err)
	}
	defer builder.Close()
	built, err := builder.build(id)
	if err != nil {
		b.Fatal(err)
	}
	var out []byte
	for _, layer := range built.layers {
		data, err := os.ReadFile(layer.path)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, data...)
	}
	return out
}

// BenchmarkChildUpload pushes a base and 100 children that each changed a
// few memory chunks. It reports the bytes each child's push sent besides its
// manifest, per unique byte of the child. It also reports how many blobs a
// second push of the whole tree sent.
func BenchmarkChildUpload(b *testing.B) {
	reg := registry.Start(b)
	s := openTestStore(b)
	base := makeBase(b, s, 32<<20)
	for i := 1; i <= 100; i++ {
		makeChild(b, s, base, strconv.Itoa(i), 1+i%4)
	}

	for i := 0; i < b.N; i++ {
		repo := openRegistryRepo(b, reg, "bench/children-"+strconv.Itoa(i))
		first, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", Children: children(b, s)})
		if err != nil {
			b.Fatal(err)
		}
		ratios := make([]float64, 0, len(first.Children))
		var sent, unique int64
		for _, child := range first.Children {
			u := uniqueBytes(b, s, base, child.Commit)
			manifest := child.Bytes - child.LayerBytes - configSize(b, s, child.Commit)
			ratios = append(ratios, float64(child.Bytes-manifest)/float64(u))
			sent += child.Bytes - manifest
			unique += u
		}
		sort.Float64s(ratios)

		again, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", Children: children(b, s)})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(sent)/float64(unique), "sent/unique")
		b.ReportMetric(ratios[len(ratios)-1], "max_sent/unique")
		b.ReportMetric(float64(unique)/float64(len(first.Children)), "unique_B/child")
		b.ReportMetric(float64(again.Total.Blobs), "blobs_second_push")
	}
}

func configSize(b *testing.B, s *testStore, id objects.ID) int64 {
	b.Helper()
	c, err := s.GetCommit(id)
	if err != nil {
		b.Fatal(err)
	}
	return int64(len(objects.Encode(objects.KindCommit, c.Encode())))
}
