package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/testsuite/registry"
	"oras.land/oras-go/v2/registry/remote"
)

// testStore is an object store with its refs in a fresh directory.
type testStore struct {
	*objects.Store
	refs *refs.Refs
}

func openTestStore(t testing.TB) *testStore {
	t.Helper()
	db, err := objects.OpenDB(t.TempDir(), objects.DBOptions{MinFreeBytes: -1, NoSyncRefs: true})
	if err != nil {
		t.Fatal(err)
	}
	s := objects.NewStore(db)
	t.Cleanup(func() { s.Close() })
	return &testStore{Store: s, refs: refs.New(db)}
}

// memoryImage returns a synthetic guest memory image: a mix of zero pages,
// random pages and repetitive program-like pages at 4 KiB granularity.
func memoryImage(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	img := make([]byte, size)
	code := []byte("\xfd\x7b\xbf\xa9\xfd\x03\x00\x91ldr x2, [sp, #16]; bl printf\x00")
	for p := 0; p < size; p += 4096 {
		page := img[p:min(p+4096, size)]
		switch r.IntN(4) {
		case 0:
		case 1, 2:
			for i := range page {
				page[i] = byte(r.Uint32())
			}
		case 3:
			for i := 0; i < len(page); i += copy(page[i:], code) {
			}
		}
	}
	return img
}

// testIndexOptions give small test images a multi-level index, as large
// guests have.
var testIndexOptions = objects.IndexOptions{Fanout: 16}

// makeBase stores a base commit with a memory index of size bytes, a
// config blob and one vCPU blob, and points refs/heads/base at it.
func makeBase(t testing.TB, s *testStore, size int) objects.ID {
	t.Helper()
	img := memoryImage(size, 1)
	memory, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), testIndexOptions)
	if err != nil {
		t.Fatal(err)
	}
	config := putChunk(t, s, []byte(`{"ram_mib":64,"vcpus":1}`))
	vcpu := putChunk(t, s, bytes.Repeat([]byte{0xa5}, 1024))
	tree := putTree(t, s, []objects.TreeEntry{
		{Name: "config", Kind: objects.KindChunk, ID: config},
		{Name: "memory", Kind: objects.KindTree, ID: memory},
		{Name: "vcpu/0", Kind: objects.KindChunk, ID: vcpu},
	})
	id, err := s.PutCommit(&objects.Commit{
		Tree:       tree,
		Platform:   map[string]string{"arch": "arm64"},
		Generation: "base",
		Time:       time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Author:     "transport test",
		Message:    "base",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.refs.Set("refs/heads/base", objects.ZeroID, id, "test"); err != nil {
		t.Fatal(err)
	}
	return id
}

// makeChild stores a fork child of parent as one that resumed and was
// captured again: the parent's tree with an identity entry and a memory
// index in which dirtyChunks chunks changed. It points
// refs/forks/base/NAME at the child.
func makeChild(t testing.TB, s *testStore, parent objects.ID, name string, dirtyChunks int) objects.ID {
	t.Helper()
	pc, err := s.GetCommit(parent)
	if err != nil {
		t.Fatal(err)
	}
	ptree, err := s.GetTree(pc.Tree)
	if err != nil {
		t.Fatal(err)
	}
	memEntry, _ := ptree.Entry("memory")
	size, chunkSize, err := s.IndexSize(memEntry.ID)
	if err != nil {
		t.Fatal(err)
	}

	r := rand.New(rand.NewPCG(uint64(len(name))*7919, uint64(name[len(name)-1])))
	changes := make(map[uint64][]byte)
	chunks := int(size) / chunkSize
	for len(changes) < dirtyChunks {
		data := make([]byte, chunkSize)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		changes[uint64(r.IntN(chunks)*chunkSize)] = data
	}
	memory, _, err := s.UpdateIndex(memEntry.ID, changes)
	if err != nil {
		t.Fatal(err)
	}

	identity, _ := json.Marshal(map[string]string{"name": name, "generation": "child-" + name})
	entries := []objects.TreeEntry{{Name: "identity", Kind: objects.KindChunk, ID: putChunk(t, s, identity)}}
	for _, e := range ptree.Entries {
		if e.Name == "memory" {
			e.ID = memory
		}
		if e.Name != "identity" {
			entries = append(entries, e)
		}
	}
	id, err := s.PutCommit(&objects.Commit{
		Tree:       putTree(t, s, entries),
		Parents:    []objects.ID{parent},
		Platform:   pc.Platform,
		Generation: "child-" + name,
		Time:       pc.Time.Add(time.Minute),
		Author:     "transport test",
		Message:    "fork child " + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.refs.Set("refs/forks/base/"+name, objects.ZeroID, id, "test"); err != nil {
		t.Fatal(err)
	}
	return id
}

func putChunk(t testing.TB, s *testStore, data []byte) objects.ID {
	t.Helper()
	id, err := s.Put(objects.KindChunk, data)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func putTree(t testing.TB, s *testStore, entries []objects.TreeEntry) objects.ID {
	t.Helper()
	tree, err := objects.NewTree(entries)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.PutTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// uniqueBytes returns the canonical size of the objects that child's
// closure has and parent's closure lacks.
func uniqueBytes(t testing.TB, s *testStore, parent, child objects.ID) int64 {
	t.Helper()
	inParent := make(map[objects.ID]bool)
	if err := s.Closure([]objects.ID{parent}, func(l objects.Link) error { inParent[l.ID] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	var total int64
	err := s.Closure([]objects.ID{child}, func(l objects.Link) error {
		if inParent[l.ID] {
			return nil
		}
		raw, err := s.GetRaw(l.ID)
		total += int64(len(raw))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// children lists the fork children of refs/forks/base/ as push takes them.
func children(t testing.TB, s *testStore) []Child {
	t.Helper()
	list, err := s.refs.List("refs/forks/base/")
	if err != nil {
		t.Fatal(err)
	}
	var out []Child
	for _, ref := range list {
		out = append(out, Child{Name: ref.Name[len("refs/forks/base/"):], Commit: ref.Target})
	}
	return out
}

// openRegistryRepo opens repository in a test registry.
func openRegistryRepo(t testing.TB, reg *registry.Registry, repository string) *remote.Repository {
	t.Helper()
	repo, err := OpenRepository(reg.Reference(repository), RemoteOptions{DockerConfig: emptyDockerConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func emptyDockerConfig(t testing.TB) string {
	t.Helper()
	path := t.TempDir() + "/config.json"
	if err := os.WriteFile(path, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fsckClean fails t when the store's copy of id is missing or corrupt.
func fsckClean(t testing.TB, s *testStore, id objects.ID) {
	t.Helper()
	report, err := s.Fsck(map[string]objects.ID{"pulled": id})
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Problems) > 0 {
		t.Errorf("fsck of %s: %d problems, first %+v", id.Short(), len(report.Problems), report.Problems[0])
	}
}

var background = context.Background()
