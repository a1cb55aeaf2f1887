package rootfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spore-vm/spore/testsuite/images"
)

// BenchmarkBuildDebian builds the Debian minbase image from an OCI layout
// into an empty cache. It reports the build time as a ratio to GNU tar -x
// of the same compressed layer in the same run, and the time of a cached
// build.
func BenchmarkBuildDebian(b *testing.B) {
	requireE2fsprogs(b)
	img, err := images.Debian(context.Background())
	if errors.Is(err, images.ErrNeedsRoot) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	layout := filepath.Join(dir, "layout")
	if _, err := img.WriteLayout(context.Background(), layout, "bench"); err != nil {
		b.Fatal(err)
	}
	layers, err := img.LayerDescriptors()
	if err != nil {
		b.Fatal(err)
	}
	ref := ociLayoutPrefix + layout + ":bench"

	var build, extract, cached time.Duration
	for i := 0; i < b.N; i++ {
		target := filepath.Join(dir, "tar-x")
		if err := os.Mkdir(target, 0o755); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for _, layer := range layers {
			blob := filepath.Join(layout, "blobs", "sha256", layer.Digest.Encoded())
			if output, err := exec.Command("tar", "-xzf", blob, "-C", target).CombinedOutput(); err != nil {
				b.Fatalf("tar -x: %v: %s", err, output)
			}
		}
		extract += time.Since(start)
		if err := os.RemoveAll(target); err != nil {
			b.Fatal(err)
		}

		cacheDir := filepath.Join(dir, "cache")
		start = time.Now()
		built, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
		if err != nil {
			b.Fatal(err)
		}
		build += time.Since(start)
		b.SetBytes(built.Size)

		start = time.Now()
		again, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
		if err != nil || !again.Cached {
			b.Fatalf("cached build: %v (Cached=%v)", err, again != nil && again.Cached)
		}
		cached += time.Since(start)
		if err := os.RemoveAll(cacheDir); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(build.Seconds()/n, "build-s")
	b.ReportMetric(extract.Seconds()/n, "tar-x-s")
	b.ReportMetric(build.Seconds()/extract.Seconds(), "build/tar-x")
	b.ReportMetric(cached.Seconds()/n, "cached-build-s")
}
