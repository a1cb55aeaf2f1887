package transport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spore-vm/spore/testsuite/registry"
)

func TestLayerCacheSkipsPackingAncestors(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 4<<20)
	child := makeChild(t, s, base, "1", 2)
	cache := t.TempDir()
	repo := openRegistryRepo(t, reg, "spores/cache")

	first, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", LayerCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if first.LayersPacked == 0 {
		t.Fatal("first push packed no layers")
	}

	second, err := Push(background, s.Store, repo, child, PushOptions{Tag: "child", LayerCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if second.LayersPacked != 1 {
		t.Errorf("child push packed %d layers, want only the child's own 1", second.LayersPacked)
	}

	// A new repository lacks the base's layers, so they are packed again
	// from the store and must match the cached descriptors.
	other := openRegistryRepo(t, reg, "spores/cache-other")
	third, err := Push(background, s.Store, other, child, PushOptions{Tag: "child", LayerCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if third.Manifest != second.Manifest {
		t.Errorf("manifest with cached descriptors %s, packed %s", second.Manifest, third.Manifest)
	}
	if third.LayersPacked <= 1 {
		t.Errorf("push to an empty repository packed %d layers, want the base's too", third.LayersPacked)
	}
	dst := openTestStore(t)
	if _, err := Pull(background, dst.Store, dst.refs, other, "child", PullOptions{Ref: "refs/heads/child"}); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, dst, child)
}

func TestLayerCacheMismatchFails(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	child := makeChild(t, s, base, "1", 1)
	cache := t.TempDir()
	if _, err := Push(background, s.Store, openRegistryRepo(t, reg, "one"), base, PushOptions{LayerCache: cache}); err != nil {
		t.Fatal(err)
	}

	// Damage the base's entry: a digest that its objects do not pack to.
	path := layerCache{dir: cache}.path(base)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), "sha256:") + len("sha256:")
	copy(data[i:], strings.Repeat("0", 64))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	_, err = Push(background, s.Store, openRegistryRepo(t, reg, "two"), child, PushOptions{LayerCache: cache})
	if err == nil || !strings.Contains(err.Error(), "layer cache in "+cache) || !strings.Contains(err.Error(), "delete that directory") {
		t.Errorf("push with a damaged cache entry: %v, want an error naming %s", err, filepath.Clean(cache))
	}
}
