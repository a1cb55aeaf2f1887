package transport

import (
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/testsuite/registry"
	"oras.land/oras-go/v2/errdef"
)

func TestPushPullByDigest(t *testing.T) {
	reg := registry.Start(t)
	src := openTestStore(t)
	base := makeBase(t, src, 4<<20)
	repo := openRegistryRepo(t, reg, "spores/base")

	pushed, err := Push(background, src.Store, repo, base, PushOptions{Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Blobs == 0 || pushed.BlobsSkipped != 0 {
		t.Errorf("first push: %d blobs sent, %d skipped; want some sent and none skipped", pushed.Blobs, pushed.BlobsSkipped)
	}

	dst := openTestStore(t)
	pulled, err := Pull(background, dst.Store, dst.refs, repo, pushed.Manifest.String(), PullOptions{Ref: "refs/heads/base"})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Commit != base {
		t.Errorf("pulled commit %s, want %s", pulled.Commit, base)
	}
	got, err := dst.refs.Resolve("refs/heads/base")
	if err != nil {
		t.Fatal(err)
	}
	if got != base {
		t.Errorf("refs/heads/base = %s, want %s", got, base)
	}
	fsckClean(t, dst, base)

	byTag, err := Pull(background, dst.Store, dst.refs, repo, "v1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if byTag.Commit != base {
		t.Errorf("pull by tag: commit %s, want %s", byTag.Commit, base)
	}
	if byTag.Blobs != 1 || byTag.BlobsSkipped == 0 {
		t.Errorf("second pull fetched %d blobs and skipped %d, want only the config fetched", byTag.Blobs, byTag.BlobsSkipped)
	}
}

func TestPushReproducibleManifest(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	child := makeChild(t, s, base, "1", 2)

	first, err := Push(background, s.Store, openRegistryRepo(t, reg, "one"), child, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Push(background, s.Store, openRegistryRepo(t, reg, "two"), child, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if first.Manifest != second.Manifest {
		t.Errorf("manifest digests differ: %s and %s", first.Manifest, second.Manifest)
	}

	// The same objects in another store give the same manifest too.
	other := openTestStore(t)
	if _, err := Pull(background, other.Store, other.refs, openRegistryRepo(t, reg, "one"), first.Manifest.String(), PullOptions{}); err != nil {
		t.Fatal(err)
	}
	third, err := Push(background, other.Store, openRegistryRepo(t, reg, "three"), child, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if third.Manifest != first.Manifest {
		t.Errorf("manifest from the pulled store %s, want %s", third.Manifest, first.Manifest)
	}
}

func TestPushHundredChildren(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 8<<20)
	for i := 1; i <= 100; i++ {
		makeChild(t, s, base, strconv.Itoa(i), 1+i%3)
	}
	repo := openRegistryRepo(t, reg, "spores/fleet")

	first, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", Children: children(t, s)})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Children) != 100 {
		t.Fatalf("pushed %d children, want 100", len(first.Children))
	}
	blobs, err := reg.BlobCount()
	if err != nil {
		t.Fatal(err)
	}

	again, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", Children: children(t, s)})
	if err != nil {
		t.Fatal(err)
	}
	if again.Total.Blobs != 0 || again.Total.LayerBytes != 0 {
		t.Errorf("second push uploaded %d blobs (%d layer bytes), want 0", again.Total.Blobs, again.Total.LayerBytes)
	}
	after, err := reg.BlobCount()
	if err != nil {
		t.Fatal(err)
	}
	// Blobs the registry stores besides ours: referrers indexes.
	if after > blobs+1 {
		t.Errorf("registry blobs grew from %d to %d on the second push", blobs, after)
	}

	extra := makeChild(t, s, base, "101", 3)
	one, err := Push(background, s.Store, repo, base, PushOptions{Children: []Child{{Name: "101", Commit: extra}}})
	if err != nil {
		t.Fatal(err)
	}
	unique := uniqueBytes(t, s, base, extra)
	child := one.Children[0]
	manifestBytes := child.Bytes - child.LayerBytes - int64(len(objects.Encode(objects.KindCommit, mustCommit(t, s, extra).Encode())))
	uploaded := child.Bytes - manifestBytes
	t.Logf("one more child: %d bytes uploaded besides its %d-byte manifest, %d unique bytes", uploaded, manifestBytes, unique)
	if float64(uploaded) > 1.05*float64(unique) {
		t.Errorf("child upload %d bytes > 1.05 × its %d unique bytes", uploaded, unique)
	}
	if one.PushedCommit.Blobs != 0 {
		t.Errorf("base re-sent %d blobs with the extra child", one.PushedCommit.Blobs)
	}
}

func TestPushErrors(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	repo := openRegistryRepo(t, reg, "spores/errors")
	pushed, err := Push(background, s.Store, repo, base, PushOptions{Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}

	dst := openTestStore(t)
	wrong := "sha256:" + strings.Repeat("0", 64)
	_, err = Pull(background, dst.Store, dst.refs, repo, wrong, PullOptions{Ref: "refs/heads/x"})
	if err == nil || !errors.Is(err, errdef.ErrNotFound) || !strings.Contains(err.Error(), wrong) {
		t.Errorf("unknown digest error = %v, want not found naming %s", err, wrong)
	}

	_, err = Pull(background, dst.Store, dst.refs, repo, "no-such-tag", PullOptions{Ref: "refs/heads/x"})
	if err == nil || !strings.Contains(err.Error(), `"no-such-tag" not found`) {
		t.Errorf("unknown tag error = %v, want one naming the tag", err)
	}

	_, err = Pull(background, dst.Store, dst.refs, repo, pushed.Manifest.String(), PullOptions{Child: "7"})
	if err == nil || !strings.Contains(err.Error(), "no fork children") {
		t.Errorf("missing child error = %v", err)
	}

	pid := reg.PID()
	reg.Stop()
	_, err = Pull(background, dst.Store, dst.refs, repo, "v1", PullOptions{Ref: "refs/heads/x"})
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), reg.Host) {
		t.Errorf("stopped registry (PID %d) error = %v, want connection refused naming %s", pid, err, reg.Host)
	}

	list, err := dst.refs.List("")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("failed pulls left refs: %v", list)
	}
}

func TestPullTamperedBlob(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 2<<20)
	repo := openRegistryRepo(t, reg, "spores/tamper")
	pushed, err := Push(background, s.Store, repo, base, PushOptions{Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}

	// Flip one byte in the data of the first object of the first layer.
	b, err := newBuilder(s.Store, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	built, err := b.build(base)
	if err != nil {
		t.Fatal(err)
	}
	layer := built.layers[0].desc
	path := reg.BlobPath(layer.Digest.Encoded())
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var victim objects.ID
	for off := len(packMagic); ; {
		copy(victim[:], data[off:])
		length, n := binary.Uvarint(data[off+objects.IDSize+1:])
		start := off + objects.IDSize + 1 + n
		if length > 1000 {
			data[start+500] ^= 0xff
			break
		}
		off = start + int(length)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	dst := openTestStore(t)
	_, err = Pull(background, dst.Store, dst.refs, repo, pushed.Manifest.String(), PullOptions{Ref: "refs/heads/base"})
	if err == nil {
		t.Fatal("pull of a tampered layer succeeded")
	}
	if !errors.Is(err, objects.ErrCorrupt) || !strings.Contains(err.Error(), victim.String()) {
		t.Errorf("error = %v, want a corrupt-object error naming %s", err, victim)
	}
	if _, ok, _ := dst.refs.Get("refs/heads/base"); ok {
		t.Error("a failed pull created refs/heads/base")
	}
}

func TestPushRegistryKilledMidPush(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 8<<20)
	repo := openRegistryRepo(t, reg, "spores/crash")

	// The rerun finds the layer descriptors in the cache and must pack
	// and upload the layers that the registry lacks.
	cache := t.TempDir()
	killed := false
	_, err := Push(background, s.Store, repo, base, PushOptions{
		Tag:        "v1",
		LayerCache: cache,
		Progress: func(p Progress) {
			if !killed && p.MediaType == MediaTypePack && p.Done >= 1<<20 && p.Done < p.Total {
				killed = true
				reg.Kill()
			}
		},
	})
	if !killed {
		t.Fatal("the push finished before the registry could be killed")
	}
	if err == nil {
		t.Fatal("push succeeded although the registry was killed")
	}
	t.Logf("push error after the kill: %v", err)

	reg.Restart()
	if _, err := repo.Resolve(background, "v1"); !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("tag v1 after the failed push: %v, want not found", err)
	}

	pushed, err := Push(background, s.Store, repo, base, PushOptions{Tag: "v1", LayerCache: cache})
	if err != nil {
		t.Fatalf("rerun after restart: %v", err)
	}
	dst := openTestStore(t)
	pulled, err := Pull(background, dst.Store, dst.refs, repo, "v1", PullOptions{Ref: "refs/heads/base"})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Commit != base || pulled.Manifest != pushed.Manifest {
		t.Errorf("pulled %s from %s, want %s from %s", pulled.Commit, pulled.Manifest, base, pushed.Manifest)
	}
	fsckClean(t, dst, base)
}

func mustCommit(t testing.TB, s *testStore, id objects.ID) *objects.Commit {
	t.Helper()
	c, err := s.GetCommit(id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPushUnreachableRegistry(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	repo := openRegistryRepo(t, reg, "spores/gone")
	reg.Stop()

	_, err := Push(background, s.Store, repo, base, PushOptions{Tag: "v1"})
	if err == nil || !strings.Contains(err.Error(), "registry is unreachable") || !strings.Contains(err.Error(), reg.Host) {
		t.Errorf("push to a stopped registry: %v, want an unreachable error naming %s", err, reg.Host)
	}
}

func TestPullChildFetchesOnlyItsClosure(t *testing.T) {
	reg := registry.Start(t)
	src := openTestStore(t)
	base := makeBase(t, src, 4<<20)
	one := makeChild(t, src, base, "1", 3)
	two := makeChild(t, src, base, "2", 3)
	repo := openRegistryRepo(t, reg, "spores/closure")
	pushed, err := Push(background, src.Store, repo, base, PushOptions{Tag: "base", Children: children(t, src)})
	if err != nil {
		t.Fatal(err)
	}

	dst := openTestStore(t)
	pulled, err := Pull(background, dst.Store, dst.refs, repo, "base", PullOptions{Child: "2", Ref: "refs/forks/base/2"})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Commit != two {
		t.Fatalf("pulled %s, want child 2 %s", pulled.Commit.Short(), two.Short())
	}
	fsckClean(t, dst, two)

	// Layers fetched: the base's and child 2's own, nothing of child 1.
	want := pushed.LayerBytes + pushed.Children[1].LayerBytes
	if pulled.LayerBytes != want {
		t.Errorf("pull --child fetched %d layer bytes, want %d (base %d + child 2 %d)", pulled.LayerBytes, want, pushed.LayerBytes, pushed.Children[1].LayerBytes)
	}
	if has, _ := dst.Has(one); has {
		t.Error("child 1's commit was fetched")
	}
	onlyInOne := 0
	err = src.Closure([]objects.ID{one}, func(l objects.Link) error {
		inTwo, _ := dst.Has(l.ID)
		if !inTwo {
			onlyInOne++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if onlyInOne == 0 {
		t.Error("every object of child 1 is in the store after pulling child 2; want child 1's delta missing")
	}
}

func TestPullKeepsExistingRef(t *testing.T) {
	reg := registry.Start(t)
	src := openTestStore(t)
	base := makeBase(t, src, 1<<20)
	child := makeChild(t, src, base, "1", 1)
	repo := openRegistryRepo(t, reg, "spores/refs")
	if _, err := Push(background, src.Store, repo, base, PushOptions{Tag: "base"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(background, src.Store, repo, child, PushOptions{Tag: "child"}); err != nil {
		t.Fatal(err)
	}

	dst := openTestStore(t)
	if _, err := Pull(background, dst.Store, dst.refs, repo, "base", PullOptions{Ref: "refs/heads/x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(background, dst.Store, dst.refs, repo, "base", PullOptions{Ref: "refs/heads/x"}); err != nil {
		t.Errorf("pulling the same commit to the same ref again: %v", err)
	}
	_, err := Pull(background, dst.Store, dst.refs, repo, "child", PullOptions{Ref: "refs/heads/x"})
	if err == nil || !strings.Contains(err.Error(), "refs/heads/x already exists") {
		t.Errorf("pull onto a ref that points elsewhere: %v", err)
	}
	got, err := dst.refs.Resolve("refs/heads/x")
	if err != nil {
		t.Fatal(err)
	}
	if got != base {
		t.Errorf("refs/heads/x = %s after the rejected pull, want %s", got.Short(), base.Short())
	}
}
