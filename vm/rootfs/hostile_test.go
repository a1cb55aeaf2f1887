package rootfs

import (
	"archive/tar"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spore-vm/spore/testsuite/images"
)

// hostileLayout writes a one-layer image to an OCI layout under dir.
func hostileLayout(t *testing.T, dir string, layer *images.Tar) (string, *images.Image) {
	t.Helper()
	data, err := layer.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	img := &images.Image{Layers: [][]byte{data}}
	layout := filepath.Join(dir, "layout")
	if _, err := img.WriteLayout(context.Background(), layout, "hostile"); err != nil {
		t.Fatal(err)
	}
	return ociLayoutPrefix + layout + ":hostile", img
}

// listFiles returns every path below dir, relative to it.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

func TestBuildRejectsHostileLayers(t *testing.T) {
	requireE2fsprogs(t)
	cases := []struct {
		name  string
		layer func(outside string) *images.Tar
		want  string
	}{
		{
			name: "dotdot path",
			layer: func(outside string) *images.Tar {
				return images.NewTar().File("etc/passwd", 0o644, "root:x:0:0::/:/bin/sh\n").
					File("../../../../../../../../"+strings.TrimPrefix(outside, "/")+"/pwned", 0o644, "escaped\n")
			},
			want: `contains "..", which would leave the root file system`,
		},
		{
			name: "dotdot inside a path",
			layer: func(outside string) *images.Tar {
				return images.NewTar().Dir("etc", 0o755).File("etc/../../pwned", 0o644, "escaped\n")
			},
			want: `contains "..", which would leave the root file system`,
		},
		{
			name: "write through absolute symlink",
			layer: func(outside string) *images.Tar {
				return images.NewTar().Symlink("escape", outside).File("escape/pwned", 0o644, "escaped\n")
			},
			want: `goes through the symlink /escape`,
		},
		{
			name: "write through relative symlink",
			layer: func(outside string) *images.Tar {
				return images.NewTar().Symlink("up", "../../..").Dir("up/pwned", 0o755)
			},
			want: `goes through the symlink /up`,
		},
		{
			name: "hard link through symlink",
			layer: func(outside string) *images.Tar {
				return images.NewTar().Symlink("escape", outside).File("f", 0o644, "x").Link("escape/pwned", "f")
			},
			want: `goes through the symlink /escape`,
		},
		{
			name: "whiteout of the parent",
			layer: func(outside string) *images.Tar {
				return images.NewTar().File("etc/passwd", 0o644, "x").File("etc/.wh...", 0, "")
			},
			want: `whiteout "etc/.wh..." names "..", not an entry of its directory`,
		},
		{
			name: "whiteout of the directory itself",
			layer: func(outside string) *images.Tar {
				return images.NewTar().File("etc/passwd", 0o644, "x").File("etc/.wh..", 0, "")
			},
			want: `names ".", not an entry of its directory`,
		},
		{
			name: "hard link to a directory",
			layer: func(outside string) *images.Tar {
				return images.NewTar().Dir("etc", 0o755).Link("etc2", "etc")
			},
			want: `hard link target "etc" is a directory`,
		},
		{
			name: "owner beyond 32 bits",
			layer: func(outside string) *images.Tar {
				return images.NewTar().Header(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Uid: 1 << 33}, []byte("x"))
			},
			want: `invalid owner 8589934592:0: ext4 owners are 0 to 4294967295`,
		},
		{
			name: "hard link to a missing file",
			layer: func(outside string) *images.Tar {
				return images.NewTar().Link("shadow", "etc/shadow")
			},
			want: `hard link target "etc/shadow" does not exist`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			cacheDir := filepath.Join(base, "cache")
			ref, _ := hostileLayout(t, base, tc.layer(outside))
			before := listFiles(t, base)

			_, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
			if err == nil {
				t.Fatal("Build accepted the hostile layer")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "layer 1 (sha256:") {
				t.Errorf("error %q does not name the layer", err)
			}
			assertNothingWritten(t, base, cacheDir, before)
		})
	}
}

// assertNothingWritten checks that a failed build left base as it was,
// apart from empty cache directories.
func assertNothingWritten(t *testing.T, base, cacheDir string, before []string) {
	t.Helper()
	if entries, _ := os.ReadDir(filepath.Join(cacheDir, imagesDir)); len(entries) != 0 {
		t.Errorf("the failed build left %d cache entries", len(entries))
	}
	if entries, _ := os.ReadDir(filepath.Join(cacheDir, tmpDir)); len(entries) != 0 {
		t.Errorf("the failed build left %d build directories", len(entries))
	}
	known := map[string]bool{}
	for _, path := range before {
		known[path] = true
	}
	for _, path := range listFiles(t, base) {
		if known[path] || path == "cache" || path == filepath.Join("cache", imagesDir) || path == filepath.Join("cache", tmpDir) {
			continue
		}
		t.Errorf("the failed build wrote %s", filepath.Join(base, path))
	}
	if _, err := os.Stat("/pwned"); err == nil {
		t.Error("/pwned exists")
	}
}

func TestBuildRejectsWrongLayerDigest(t *testing.T) {
	requireE2fsprogs(t)
	base := t.TempDir()
	cacheDir := filepath.Join(base, "cache")
	ref, img := hostileLayout(t, base, images.NewTar().File("etc/hostname", 0o644, "good\n"))

	// Replace the layer blob with another valid layer, as a tampered
	// layout or registry would serve it.
	layers, err := img.LayerDescriptors()
	if err != nil {
		t.Fatal(err)
	}
	other, err := images.NewTar().File("etc/hostname", 0o644, "evil\n").File("etc/extra", 0o644, "x\n").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	otherImg := &images.Image{Layers: [][]byte{other}}
	otherLayout := filepath.Join(base, "other")
	if _, err := otherImg.WriteLayout(context.Background(), otherLayout, "x"); err != nil {
		t.Fatal(err)
	}
	otherLayers, err := otherImg.LayerDescriptors()
	if err != nil {
		t.Fatal(err)
	}
	otherBlob, err := os.ReadFile(filepath.Join(otherLayout, "blobs", "sha256", otherLayers[0].Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	blobPath := filepath.Join(base, "layout", "blobs", "sha256", layers[0].Digest.Encoded())
	if err := os.Chmod(blobPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blobPath, otherBlob, 0o644); err != nil {
		t.Fatal(err)
	}
	before := listFiles(t, base)

	_, err = Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
	if err == nil {
		t.Fatal("Build accepted a layer whose digest does not match")
	}
	want := "digest mismatch: the content is " + otherLayers[0].Digest.String() + " but the manifest names " + layers[0].Digest.String()
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	assertNothingWritten(t, base, cacheDir, before)
}

func TestBuildAppliesLayersInOrder(t *testing.T) {
	requireE2fsprogs(t)
	lower, _ := images.NewTar().
		File("etc/keep", 0o644, "lower\n").
		File("etc/gone", 0o644, "lower\n").
		File("etc/replaced", 0o644, "lower\n").
		File("opaque/old", 0o644, "lower\n").
		File("opaque/sub/lowerfile", 0o644, "lower\n").
		File("dirbecomesfile/child", 0o644, "lower\n").
		File("shared", 0o644, "shared\n").
		Link("shared-link", "shared").
		Bytes()
	upper, _ := images.NewTar().
		File("etc/.wh.gone", 0, "").
		File("etc/replaced", 0o600, "upper\n").
		Dir("opaque", 0o755).
		File("opaque/new", 0o644, "upper\n").
		Dir("opaque/sub", 0o755).
		File("opaque/sub/upperfile", 0o644, "upper\n").
		Link("opaque/keep-link", "etc/keep").
		File("opaque/.wh..wh..opq", 0, "").
		File("dirbecomesfile", 0o644, "now a file\n").
		File("shared", 0o644, "rewritten\n").
		Bytes()
	img := &images.Image{Layers: [][]byte{lower, upper}}
	layout := filepath.Join(t.TempDir(), "layout")
	if _, err := img.WriteLayout(context.Background(), layout, "layers"); err != nil {
		t.Fatal(err)
	}

	built, err := Build(context.Background(), ociLayoutPrefix+layout+":layers", BuildOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, built.Path)
	ls := func(dir string) string { return debugfsOutput(t, built.Path, "ls "+dir) }

	if got := debugfsOutput(t, built.Path, "cat /etc/keep"); got != "lower\n" && !strings.HasSuffix(got, "\nlower\n") {
		t.Errorf("/etc/keep = %q, want lower", got)
	}
	if strings.Contains(ls("/etc"), "gone") {
		t.Errorf("/etc/gone survived its whiteout: %s", ls("/etc"))
	}
	if got := debugfsOutput(t, built.Path, "cat /etc/replaced"); !strings.Contains(got, "upper") {
		t.Errorf("/etc/replaced = %q, want upper", got)
	}
	if listing := ls("/opaque"); strings.Contains(listing, "old") || !strings.Contains(listing, "new") {
		t.Errorf("/opaque after the opaque whiteout: %s, want only new", listing)
	}
	if listing := ls("/opaque/sub"); strings.Contains(listing, "lowerfile") || !strings.Contains(listing, "upperfile") {
		t.Errorf("/opaque/sub, merged in the upper layer below an opaque whiteout: %s, want only upperfile", listing)
	}
	if !strings.Contains(ls("/opaque"), "keep-link") {
		t.Errorf("/opaque/keep-link, a hard link the upper layer added, is gone: %s", ls("/opaque"))
	}
	if stat := debugfsOutput(t, built.Path, "stat /dirbecomesfile"); statField(t, stat, "Type:") != "regular" {
		t.Errorf("/dirbecomesfile is not a regular file:\n%s", stat)
	}
	if got := debugfsOutput(t, built.Path, "cat /shared-link"); !strings.Contains(got, "shared") || strings.Contains(got, "rewritten") {
		t.Errorf("/shared-link = %q, want the lower content: a rewrite in an upper layer breaks the hard link", got)
	}
}

func FuzzApplyLayer(f *testing.F) {
	seeds := []*images.Tar{
		images.NewTar().Dir("etc", 0o755).File("etc/passwd", 0o644, "root\n").Symlink("bin", "usr/bin"),
		images.NewTar().File("a/b/c", 0o600, "x").Link("a/d", "a/b/c").File("a/.wh.b", 0, ""),
		images.NewTar().File("x/.wh..wh..opq", 0, "").Header(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3}, nil),
		images.NewTar().Symlink("s", "/").File("s/etc", 0o644, ""),
		images.NewTar().File("../x", 0o644, ""),
	}
	for _, seed := range seeds {
		data, err := seed.Bytes()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		a := &applier{tree: newTree(), dataDir: filepath.Join(dir, "data")}
		for _, sub := range []string{"data", "root", "xattrs"} {
			if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.applyLayer(strings.NewReader(string(data)), 1); err != nil {
			return
		}
		if _, err := emitTree(a.tree, filepath.Join(dir, "root"), filepath.Join(dir, "xattrs")); err != nil {
			t.Fatalf("emitTree failed on a layer that applied: %v", err)
		}
	})
}
