package objects

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestGCDeletesUnreachableKeepsReachable(t *testing.T) {
	s, _ := openTestDB(t)
	db := s.Backend().(*DB)
	img := vmImage(1<<20, 31)
	root, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{ChunkSize: 16 << 10, Fanout: 4})
	if err != nil {
		t.Fatal(err)
	}
	tree, _ := NewTree([]TreeEntry{{Name: "memory", Kind: KindTree, ID: root}})
	treeID, _ := s.PutTree(tree)
	commit, _ := s.PutCommit(&Commit{Tree: treeID})
	if err := db.UpdateRefs([]RefUpdate{{Name: "refs/heads/main", Expect: ExpectAbsent, New: RefValue{ID: commit}}}); err != nil {
		t.Fatal(err)
	}
	garbage, _ := s.Put(KindChunk, []byte("garbage"))
	// A reflog entry keeps an object alive after its ref moved on.
	old, _ := s.Put(KindChunk, []byte("old tag target"))
	if err := db.UpdateRefs([]RefUpdate{{Name: "refs/tags/t", Expect: ExpectAbsent, New: RefValue{ID: old}}}); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateRefs([]RefUpdate{{Name: "refs/tags/t", Expect: ExpectValue, Old: RefValue{ID: old}, New: RefValue{ID: commit}}}); err != nil {
		t.Fatal(err)
	}

	stats, err := db.GC(GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Deleted != 0 {
		t.Fatalf("GC within the grace period deleted %d objects", stats.Deleted)
	}
	stats, err = db.GC(GCOptions{Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Deleted != 1 {
		t.Fatalf("GC deleted %d objects, want only the garbage chunk", stats.Deleted)
	}
	if _, _, err := s.Get(garbage); !errors.Is(err, ErrNotFound) {
		t.Fatalf("garbage after GC: %v", err)
	}
	if _, _, err := s.Get(old); err != nil {
		t.Fatalf("object named by a reflog entry was deleted: %v", err)
	}
	report, err := s.Fsck(map[string]ID{"main": commit})
	if err != nil || len(report.Problems) != 0 {
		t.Fatalf("fsck after GC: %v %+v", err, report)
	}
}

func TestGCExpiresReflogEntries(t *testing.T) {
	s, _ := openTestDB(t)
	db := s.Backend().(*DB)
	old, _ := s.Put(KindChunk, []byte("old target"))
	mid, _ := s.Put(KindChunk, []byte("middle target"))
	cur, _ := s.Put(KindChunk, []byte("current target"))
	// Entries keep both their old and new IDs, so old is collectable once
	// both entries that name it expired.
	long := time.Now().Add(-48 * time.Hour)
	for _, u := range []RefUpdate{
		{Expect: ExpectAbsent, New: RefValue{ID: old}, Time: long},
		{Expect: ExpectValue, Old: RefValue{ID: old}, New: RefValue{ID: mid}, Time: long.Add(time.Second)},
		{Expect: ExpectValue, Old: RefValue{ID: mid}, New: RefValue{ID: cur}},
	} {
		u.Name = "refs/heads/main"
		if err := db.UpdateRefs([]RefUpdate{u}); err != nil {
			t.Fatal(err)
		}
	}

	stats, err := db.GC(GCOptions{Grace: time.Nanosecond, ExpireReflogs: 24 * time.Hour, DryRun: true})
	if err != nil || stats.ExpiredReflogEntries != 2 || stats.Deleted != 0 {
		t.Fatalf("dry run: %+v, %v; want 2 expired entries and nothing deleted", stats, err)
	}
	if log, _ := db.Reflog("refs/heads/main"); len(log) != 3 {
		t.Fatalf("dry run removed reflog entries: %d left", len(log))
	}
	stats, err = db.GC(GCOptions{Grace: time.Nanosecond, ExpireReflogs: 24 * time.Hour})
	if err != nil || stats.ExpiredReflogEntries != 2 || stats.Deleted != 1 {
		t.Fatalf("GC = %+v, %v; want 2 expired entries and the old target deleted", stats, err)
	}
	if _, _, err := s.Get(old); !errors.Is(err, ErrNotFound) {
		t.Errorf("object reached only by an expired reflog entry: %v", err)
	}
	for _, id := range []ID{mid, cur} {
		if _, _, err := s.Get(id); err != nil {
			t.Errorf("target named by the remaining entry: %v", err)
		}
	}
}

// TestGCWithConcurrentWriters runs collections while writers store new
// objects and only then move their refs, and checks that no ref ever names
// an incomplete commit.
func TestGCWithConcurrentWriters(t *testing.T) {
	s, _ := openTestDB(t)
	db := s.Backend().(*DB)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("refs/heads/w%d", w)
			var cur ID
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				img := vmImage(256<<10, uint64(w*100000+i))
				root, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{ChunkSize: 16 << 10, Fanout: 4})
				if err != nil {
					errs <- err
					return
				}
				tree, _ := NewTree([]TreeEntry{{Name: "memory", Kind: KindTree, ID: root}})
				treeID, err := s.PutTree(tree)
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(2 * time.Millisecond) // a writer between objects and ref
				commit, err := s.PutCommit(&Commit{Tree: treeID, Message: fmt.Sprint(i)})
				if err != nil {
					errs <- err
					return
				}
				u := RefUpdate{Name: name, Expect: ExpectAbsent, New: RefValue{ID: commit}}
				if !cur.IsZero() {
					u.Expect, u.Old = ExpectValue, RefValue{ID: cur}
				}
				if err := db.UpdateRefs([]RefUpdate{u}); err != nil {
					errs <- err
					return
				}
				cur = commit
			}
		}()
	}
	for i := 0; i < 15; i++ {
		if _, err := db.GC(GCOptions{Grace: time.Minute}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	refs, _ := db.ListRefs("")
	roots := map[string]ID{}
	for _, r := range refs {
		roots[r.Name] = r.Value.ID
	}
	report, err := s.Fsck(roots)
	if err != nil || len(report.Problems) != 0 {
		t.Fatalf("fsck after concurrent GC: %v %+v", err, report)
	}
}
