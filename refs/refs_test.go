package refs

import (
	"errors"
	"strings"
	"testing"

	"github.com/spore-vm/spore/objects"
)

func TestValidateName(t *testing.T) {
	valid := []string{"HEAD", "refs/heads/main", "refs/tags/v1.0", "refs/forks/warm/17", "refs/heads/a-b_c"}
	for _, name := range valid {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", name, err)
		}
	}
	invalid := []string{
		"", "main", "refs/heads/a..b", "refs/heads/a@{1}", "refs/heads/x.lock", "refs/heads/.hidden",
		"refs/heads/", "refs/heads/a//b", "refs/heads/end.", "refs/heads/sp ace", "refs/heads/tab\t",
		"refs/heads/nul\x00", "refs/heads/del\x7f", "refs/heads/a~1", "refs/heads/a^", "refs/heads/a:b",
		"refs/heads/a?", "refs/heads/a*", "refs/heads/a[b", "refs/heads/a\\b", "refs/" + strings.Repeat("x", MaxNameLen),
	}
	for _, name := range invalid {
		err := ValidateName(name)
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", name, err)
		}
	}
}

func openStore(t *testing.T) (*objects.Store, *Refs) {
	t.Helper()
	db, err := objects.OpenDB(t.TempDir(), objects.DBOptions{MinFreeBytes: -1, NoSyncRefs: true})
	if err != nil {
		t.Fatal(err)
	}
	s := objects.NewStore(db)
	t.Cleanup(func() { s.Close() })
	return s, New(db)
}

func putChunk(t *testing.T, s *objects.Store, data string) objects.ID {
	t.Helper()
	id, err := s.Put(objects.KindChunk, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSetCompareAndSwap(t *testing.T) {
	s, r := openStore(t)
	a, b := putChunk(t, s, "a"), putChunk(t, s, "b")
	if err := r.Set("refs/heads/main", objects.ZeroID, a, "create"); err != nil {
		t.Fatal(err)
	}
	err := r.Set("refs/heads/main", objects.ZeroID, b, "create again")
	var conflict *objects.RefConflictError
	if !errors.As(err, &conflict) || conflict.Current.ID != a {
		t.Fatalf("create of existing ref = %v, want a conflict naming %s", err, a.Short())
	}
	if err := r.Set("refs/heads/main", b, b, "wrong old"); !errors.As(err, &conflict) {
		t.Fatalf("update with wrong old = %v, want conflict", err)
	}
	if err := r.Set("refs/heads/main", a, b, "advance"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve("refs/heads/main"); err != nil || got != b {
		t.Fatalf("Resolve = %s, %v; want %s", got.Short(), err, b.Short())
	}
	log, err := r.Reflog("refs/heads/main")
	if err != nil || len(log) != 2 {
		t.Fatalf("reflog = %v, %v; want 2 entries", log, err)
	}
	if log[0].Old != objects.ZeroID || log[0].New != a || log[1].Old != a || log[1].New != b || log[1].Reason != "advance" {
		t.Errorf("reflog entries = %+v", log)
	}
	if !log[1].Time.After(log[0].Time) {
		t.Errorf("reflog times are not increasing: %v, %v", log[0].Time, log[1].Time)
	}
}

func TestSetRejectsMissingTarget(t *testing.T) {
	_, r := openStore(t)
	missing := objects.Hash(objects.KindChunk, []byte("never stored"))
	err := r.Set("refs/heads/main", objects.ZeroID, missing, "create")
	if !errors.Is(err, objects.ErrNotFound) || !strings.Contains(err.Error(), missing.String()) {
		t.Fatalf("Set to missing object = %v, want ErrNotFound naming it", err)
	}
	if _, ok, _ := r.Get("refs/heads/main"); ok {
		t.Fatal("ref exists after a rejected update")
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	s, r := openStore(t)
	a := putChunk(t, s, "a")
	if err := r.Set("refs/tags/t", objects.ZeroID, a, "tag"); err != nil {
		t.Fatal(err)
	}
	err := r.Apply(
		Update{Name: "refs/forks/x/1", New: a, Reason: "fork"},
		Update{Name: "refs/tags/t", New: a, Reason: "conflicting create"},
	)
	if err == nil {
		t.Fatal("Apply with one failing update succeeded")
	}
	if _, ok, _ := r.Get("refs/forks/x/1"); ok {
		t.Fatal("first update of a failed Apply is visible")
	}
}

func TestSymbolicHead(t *testing.T) {
	s, r := openStore(t)
	a, b := putChunk(t, s, "a"), putChunk(t, s, "b")
	if err := r.SetSymbolic(Head, "refs/heads/main", "init"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(Head); !errors.Is(err, objects.ErrNotFound) {
		t.Fatalf("Resolve(HEAD) before main exists = %v, want ErrNotFound", err)
	}
	if err := r.Set(Head, objects.ZeroID, a, "first"); err != nil {
		t.Fatal(err)
	}
	if err := r.Set(Head, a, b, "second"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Resolve("refs/heads/main"); got != b {
		t.Fatalf("update through HEAD did not move refs/heads/main: %s", got.Short())
	}
}

func TestRevision(t *testing.T) {
	s, r := openStore(t)
	a, b := putChunk(t, s, "a"), putChunk(t, s, "b")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Set("refs/heads/main", objects.ZeroID, a, "x"))
	must(r.Set("refs/tags/v1", objects.ZeroID, b, "x"))
	must(r.Set("refs/heads/both", objects.ZeroID, a, "x"))
	must(r.Set("refs/tags/both", objects.ZeroID, b, "x"))

	if id, name, err := Revision(s, r, "main"); err != nil || id != a || name != "refs/heads/main" {
		t.Errorf("Revision(main) = %s %s %v", id.Short(), name, err)
	}
	if id, _, err := Revision(s, r, "v1"); err != nil || id != b {
		t.Errorf("Revision(v1) = %s %v", id.Short(), err)
	}
	if id, _, err := Revision(s, r, a.String()[:10]); err != nil || id != a {
		t.Errorf("Revision(prefix) = %s %v", id.Short(), err)
	}
	_, _, err := Revision(s, r, "both")
	if !errors.Is(err, objects.ErrAmbiguous) || !strings.Contains(err.Error(), "refs/heads/both") || !strings.Contains(err.Error(), "refs/tags/both") {
		t.Errorf("Revision(both) = %v, want ambiguity listing both refs", err)
	}
	if _, _, err := Revision(s, r, "nosuch"); !errors.Is(err, objects.ErrNotFound) {
		t.Errorf("Revision(nosuch) = %v, want ErrNotFound", err)
	}
	if _, _, err := Revision(s, r, "a..b"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Revision(a..b) = %v, want ErrInvalidName", err)
	}
}

func TestRevisionAmbiguousPrefix(t *testing.T) {
	s, r := openStore(t)
	// Store chunks until two IDs share their first four hex digits.
	seen := map[string]objects.ID{}
	var prefix string
	for i := 0; prefix == ""; i++ {
		id := putChunk(t, s, strings.Repeat("x", i+1))
		p := id.String()[:4]
		if _, ok := seen[p]; ok {
			prefix = p
		}
		seen[p] = id
	}
	_, _, err := Revision(s, r, prefix)
	if !errors.Is(err, objects.ErrAmbiguous) || strings.Count(err.Error(), "\n  "+prefix) < 2 {
		t.Fatalf("Revision(%s) = %v, want ambiguity listing the candidates", prefix, err)
	}
}

func TestForkNamespace(t *testing.T) {
	id := objects.ID{0xab, 0xcd}
	for ref, want := range map[string]string{
		"refs/heads/base":        "refs/forks/base/",
		"refs/tags/v1":           "refs/forks/v1/",
		"refs/forks/base/000003": "refs/forks/base/000003/",
		"":                       "refs/forks/" + id.Short() + "/",
		id.String():              "refs/forks/" + id.Short() + "/",
	} {
		if got := ForkNamespace(ref, id); got != want {
			t.Errorf("ForkNamespace(%q) = %q, expected %q", ref, got, want)
		}
	}
}
