package transport

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spore-vm/spore/objects"
)

func TestPackUnpackRoundTrip(t *testing.T) {
	src := openTestStore(t)
	base := makeBase(t, src, 4<<20)
	for _, name := range []string{"1", "2", "3"} {
		makeChild(t, src, base, name, 2)
	}
	path := filepath.Join(t.TempDir(), "fleet.tar")

	packed, err := Pack(background, src.Store, path, base, PackOptions{Ref: "refs/heads/base", Children: children(t, src)})
	if err != nil {
		t.Fatal(err)
	}
	if len(packed.Children) != 3 {
		t.Fatalf("packed %d children, want 3", len(packed.Children))
	}

	dst := openTestStore(t)
	unpacked, err := Unpack(background, dst.Store, dst.refs, path, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if unpacked.Commit != base {
		t.Errorf("unpacked commit %s, want %s", unpacked.Commit, base)
	}

	want, err := src.refs.List("refs/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := dst.refs.List("refs/")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("unpacked %d refs, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Target != want[i].Target {
			t.Errorf("ref %d: %s -> %s, want %s -> %s", i, got[i].Name, got[i].Target.Short(), want[i].Name, want[i].Target.Short())
		}
		fsckClean(t, dst, want[i].Target)
	}

	// Every object of the tree has the same bytes in both stores.
	roots := make([]objects.ID, len(want))
	for i, ref := range want {
		roots[i] = ref.Target
	}
	err = src.Closure(roots, func(l objects.Link) error {
		a, err := src.GetRaw(l.ID)
		if err != nil {
			return err
		}
		b, err := dst.GetRaw(l.ID)
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			t.Errorf("object %s differs after unpack", l.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPackReproducible(t *testing.T) {
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	makeChild(t, s, base, "1", 1)
	dir := t.TempDir()

	var bundles [][]byte
	for _, name := range []string{"a.tar", "b.tar"} {
		path := filepath.Join(dir, name)
		if _, err := Pack(background, s.Store, path, base, PackOptions{Ref: "refs/heads/base", Children: children(t, s)}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		bundles = append(bundles, data)
	}
	if !bytes.Equal(bundles[0], bundles[1]) {
		t.Error("two packs of the same commit differ")
	}
}

func TestUnpackOneChild(t *testing.T) {
	src := openTestStore(t)
	base := makeBase(t, src, 2<<20)
	one := makeChild(t, src, base, "1", 2)
	two := makeChild(t, src, base, "2", 2)
	path := filepath.Join(t.TempDir(), "fleet.tar")
	if _, err := Pack(background, src.Store, path, base, PackOptions{Ref: "refs/heads/base", Children: children(t, src)}); err != nil {
		t.Fatal(err)
	}

	dst := openTestStore(t)
	result, err := Unpack(background, dst.Store, dst.refs, path, UnpackOptions{Child: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if result.Commit != two || result.Ref != "refs/forks/base/2" {
		t.Errorf("unpacked %s as %s, want %s as refs/forks/base/2", result.Commit.Short(), result.Ref, two.Short())
	}
	fsckClean(t, dst, two)
	if has, _ := dst.Has(one); has {
		t.Error("unpacking child 2 also stored child 1")
	}

	_, err = Unpack(background, dst.Store, dst.refs, path, UnpackOptions{Child: "9", Ref: "refs/heads/nine"})
	if err == nil || !strings.Contains(err.Error(), `child "9" not found`) || !strings.Contains(err.Error(), "1, 2") {
		t.Errorf("unknown child error = %v, want one that lists 1, 2", err)
	}
}

func TestOpenBundleRejectsOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-bundle")
	if err := os.WriteFile(path, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenBundle(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error = %v, want one naming %s", err, path)
	}
}

func FuzzOpenBundle(f *testing.F) {
	s := openTestStore(f)
	base := makeBase(f, s, 64<<10)
	path := filepath.Join(f.TempDir(), "seed.tar")
	if _, err := Pack(background, s.Store, path, base, PackOptions{Ref: "refs/heads/base"}); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "bundle.tar")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dst := openTestStore(t)
		result, err := Unpack(background, dst.Store, dst.refs, path, UnpackOptions{Ref: "refs/heads/fuzz"})
		if err != nil {
			if _, ok, _ := dst.refs.Get("refs/heads/fuzz"); ok {
				t.Fatal("a failed unpack created a ref")
			}
			return
		}
		fsckClean(t, dst, result.Commit)
	})
}
