package guest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

// forkFixture stores a commit shaped like a capture (config, a vCPU,
// memory) under refs/heads/base and returns its ID.
func forkFixture(t testing.TB) (*objects.Store, *refs.Refs, objects.ID) {
	t.Helper()
	store, err := objects.Open(t.TempDir(), objects.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	r := refs.New(store.Backend())

	ram := bytes.Repeat([]byte("warm guest page "), 1<<16)
	memory, _, err := store.ImportImage(bytes.NewReader(ram), int64(len(ram)), objects.IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	config, err := store.Put(objects.KindChunk, []byte(`{"version":1,"memory_bytes":1048576,"vcpus":1}`))
	if err != nil {
		t.Fatal(err)
	}
	entries := []objects.TreeEntry{
		{Name: entryConfig, Kind: objects.KindChunk, ID: config},
		{Name: entryMemory, Kind: objects.KindTree, ID: memory},
	}
	// The state entries of a 2-vCPU guest with three virtio devices.
	for _, name := range []string{vcpuPrefix + "0", vcpuPrefix + "1", entryGIC, virtioPrefix + "0", virtioPrefix + "1", virtioPrefix + "2"} {
		state, err := store.Put(objects.KindChunk, []byte(name+" state"))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, objects.TreeEntry{Name: name, Kind: objects.KindChunk, ID: state})
	}
	tree, err := objects.NewTree(entries)
	if err != nil {
		t.Fatal(err)
	}
	treeID, err := store.PutTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	// A platform contract as large as a real one.
	platform := map[string]string{"arch": "arm64", "backend": "kvm", "board_version": "1", "vgic": "v3",
		"page_size": "4096", "ram_bytes": "268435456", "vcpus": "2", "timer_hz": "62500000"}
	for _, reg := range []string{"midr_el1", "id_aa64pfr0_el1", "id_aa64pfr1_el1", "id_aa64isar0_el1",
		"id_aa64isar1_el1", "id_aa64mmfr0_el1", "id_aa64mmfr1_el1"} {
		platform["vcpu."+reg] = "0x1100000010111112"
	}
	id, err := store.PutCommit(&objects.Commit{Tree: treeID, Platform: platform})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set("refs/heads/base", objects.ZeroID, id, "test"); err != nil {
		t.Fatal(err)
	}
	return store, r, id
}

func TestForkChildren(t *testing.T) {
	store, r, base := forkFixture(t)
	baseTree := mustTree(t, store, base)

	children, stats, err := Fork(store, r, base, "refs/heads/base", ForkOptions{Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(children) != 4 || stats.Objects != 12 {
		t.Fatalf("got %d children and %d objects, expected 4 and 12", len(children), stats.Objects)
	}

	vmIDs := map[string]bool{}
	for i, c := range children {
		wantRef := "refs/forks/base/00000" + string(rune('0'+i))
		if c.Ref != wantRef {
			t.Errorf("child %d ref = %s, expected %s", i, c.Ref, wantRef)
		}
		got, err := r.Resolve(c.Ref)
		if err != nil || got != c.Commit {
			t.Errorf("ref %s = %v (%v), expected %v", c.Ref, got, err, c.Commit)
		}
		commit, err := store.GetCommit(c.Commit)
		if err != nil {
			t.Fatal(err)
		}
		if len(commit.Parents) != 1 || commit.Parents[0] != base {
			t.Errorf("child %d parents = %v, expected [%v]", i, commit.Parents, base)
		}
		tree, err := store.GetTree(commit.Tree)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range baseTree.Entries {
			if got, ok := tree.Entry(e.Name); !ok || got.ID != e.ID {
				t.Errorf("child %d entry %s = %v, expected the parent's %v", i, e.Name, got.ID, e.ID)
			}
		}
		id, err := loadIdentity(store, tree)
		if err != nil || id == nil {
			t.Fatalf("child %d identity: %v, %v", i, id, err)
		}
		if id.Index != i || id.Count != 4 || id.Generation != 1 || id.Parent != base {
			t.Errorf("child %d identity = %+v", i, id)
		}
		if id.Hostname != "base-00000"+string(rune('0'+i)) {
			t.Errorf("child %d hostname = %q", i, id.Hostname)
		}
		if commit.Generation != id.GenerationID {
			t.Errorf("child %d commit generation %q, identity %q", i, commit.Generation, id.GenerationID)
		}
		vmIDs[id.VMID] = true
	}
	if len(vmIDs) != 4 {
		t.Errorf("4 children have %d distinct VM IDs", len(vmIDs))
	}
}

func TestForkNestedGeneration(t *testing.T) {
	store, r, base := forkFixture(t)
	first, _, err := Fork(store, r, base, "refs/heads/base", ForkOptions{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := Fork(store, r, first[1].Commit, first[1].Ref, ForkOptions{Count: 3, Pattern: "w%d"})
	if err != nil {
		t.Fatal(err)
	}
	if second[2].Ref != "refs/forks/base/000001/w2" {
		t.Errorf("grandchild ref = %s", second[2].Ref)
	}
	if id := second[2].Identity; id.Generation != 2 || id.Name != "base/000001/w2" || id.Hostname != "base-000001-w2" {
		t.Errorf("grandchild identity = %+v", id)
	}
}

func TestForkBadInputWritesNothing(t *testing.T) {
	store, r, base := forkFixture(t)
	if _, _, err := Fork(store, r, base, "refs/heads/base", ForkOptions{Count: 2}); err != nil {
		t.Fatal(err)
	}
	before, err := r.List("")
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		opts ForkOptions
		want string
	}{
		{"zero count", ForkOptions{Count: 0}, "invalid --count 0"},
		{"negative count", ForkOptions{Count: -3}, "invalid --count -3"},
		{"absurd count", ForkOptions{Count: MaxForkCount + 1}, "give 1 to"},
		{"pattern without verb", ForkOptions{Count: 2, Pattern: "worker"}, "add %d"},
		{"two verbs", ForkOptions{Count: 2, Pattern: "%d-%d"}, "use one %d"},
		{"string verb", ForkOptions{Count: 2, Pattern: "%s"}, "use one %d"},
		{"bad ref chars", ForkOptions{Count: 2, Pattern: "a b %d"}, "invalid --name"},
		{"existing children", ForkOptions{Count: 3}, "exists already"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Fork(store, r, base, "refs/heads/base", tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, expected one containing %q", err, tc.want)
			}
		})
	}

	after, err := r.List("")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("refs went from %d to %d after failed forks", len(before), len(after))
	}
}

func TestForkRejectsNonVMCommit(t *testing.T) {
	store, r, _ := forkFixture(t)
	tree, err := store.PutTree(&objects.Tree{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := store.PutCommit(&objects.Commit{Tree: tree})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Fork(store, r, id, "", ForkOptions{Count: 1})
	if err == nil || !strings.Contains(err.Error(), "not a captured VM") {
		t.Errorf("error = %v, expected one saying the commit is not a captured VM", err)
	}
}

func TestForkForceReplaces(t *testing.T) {
	store, r, base := forkFixture(t)
	first, _, err := Fork(store, r, base, "refs/heads/base", ForkOptions{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := Fork(store, r, base, "refs/heads/base", ForkOptions{Count: 2, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Resolve(first[0].Ref)
	if err != nil || got != second[0].Commit || got == first[0].Commit {
		t.Errorf("after --force, %s = %v (%v), expected the new child %v", first[0].Ref, got, err, second[0].Commit)
	}
}

func mustTree(t testing.TB, store *objects.Store, commit objects.ID) *objects.Tree {
	t.Helper()
	c, err := store.GetCommit(commit)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := store.GetTree(c.Tree)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// BenchmarkFork1000 forks a commit shaped like a capture into 1000
// children, with one batch of objects and one ref update, and reports the
// time and the object bytes per child.
func BenchmarkFork1000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		store, r, base := forkFixture(b)
		b.StartTimer()
		start := time.Now()
		_, stats, err := Fork(store, r, base, "refs/heads/base", ForkOptions{Count: 1000})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000/1000, "ms/child")
		b.ReportMetric(float64(stats.Bytes)/1000, "B/child")
	}
}
