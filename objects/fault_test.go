package objects

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// flipStoredByte flips one byte of an object's stored value in place.
func flipStoredByte(t *testing.T, s *Store, id ID, at int) {
	t.Helper()
	db := s.Backend().(*DB)
	val, err := db.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	val[at%len(val)] ^= 0x01
	if err := db.db.Update(func(txn *badger.Txn) error { return txn.Set(objectKey(id), val) }); err != nil {
		t.Fatal(err)
	}
}

func TestFlippedByteIsDetected(t *testing.T) {
	s, _ := openTestDB(t)
	random := vmImage(1<<20, 5)
	for name, data := range map[string][]byte{
		"raw":        bytes.Repeat([]byte{0xa5, 0x5a, 0x11, 0x99}, 1),
		"compressed": bytes.Repeat([]byte("spore compresses this "), 1000),
		"random":     random[:64<<10],
	} {
		id, err := s.Put(KindChunk, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []int{1, 2, 7, 100} {
			flipStoredByte(t, s, id, at)
			_, _, err = s.Get(id)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), id.String()) {
				t.Errorf("%s: Get after flipping byte %d = %v, want ErrCorrupt naming %s", name, at, err, id.Short())
			}
			flipStoredByte(t, s, id, at)
			if _, _, err := s.Get(id); err != nil {
				t.Fatalf("%s: Get after restoring byte %d: %v", name, at, err)
			}
		}
	}
}

func TestFsckReportsCorruptAndMissingWithRefs(t *testing.T) {
	s, _ := openTestDB(t)
	img := vmImage(1<<20, 11)
	root, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{ChunkSize: 64 << 10, Fanout: 4})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := s.Put(KindChunk, []byte("config"))
	tree, _ := NewTree([]TreeEntry{{Name: "memory", Kind: KindTree, ID: root}, {Name: "config", Kind: KindChunk, ID: cfg}})
	treeID, err := s.PutTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	commit, err := s.PutCommit(&Commit{Tree: treeID, Message: "m"})
	if err != nil {
		t.Fatal(err)
	}

	var victim ID
	s.IndexChunks(root, func(c Chunk) error {
		if !c.Hole && victim.IsZero() {
			victim = c.ID
		}
		return nil
	})
	flipStoredByte(t, s, victim, 5)
	db := s.Backend().(*DB)
	if err := db.db.Update(func(txn *badger.Txn) error { return txn.Delete(objectKey(cfg)) }); err != nil {
		t.Fatal(err)
	}

	report, err := s.Fsck(map[string]ID{"refs/heads/main": commit, "refs/tags/other": commit})
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Problems) != 2 {
		t.Fatalf("fsck found %d problems, want 2: %+v", len(report.Problems), report.Problems)
	}
	for _, p := range report.Problems {
		switch p.ID {
		case victim:
			if p.Missing || !strings.Contains(p.Error, "corrupt") {
				t.Errorf("corrupt chunk reported as %+v", p)
			}
		case cfg:
			if !p.Missing {
				t.Errorf("missing config reported as %+v", p)
			}
		default:
			t.Errorf("unexpected problem %+v", p)
		}
		if strings.Join(p.NeededBy, ",") != "refs/heads/main,refs/tags/other" {
			t.Errorf("problem %s needed by %v, want both refs", p.ID.Short(), p.NeededBy)
		}
	}
	_, err = s.ReadChunk(root, 0)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadChunk of the corrupt chunk = %v, want ErrCorrupt", err)
	}
}

func TestDiskFullReserveRejectsWrite(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenDB(dir, DBOptions{MinFreeBytes: 1 << 62, NoSyncRefs: true})
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(db)
	defer s.Close()
	img := vmImage(1<<20, 1)
	_, _, err = s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{})
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "free disk space") {
		t.Fatalf("import with no free space = %v, want ErrDiskFull with the fix", err)
	}
	ids, err := db.ListIDs("", ZeroID, 10)
	if err != nil || len(ids) != 0 {
		t.Fatalf("objects visible after a rejected write: %v, %v", ids, err)
	}
}

// TestDiskFullOnSmallFilesystem fills a real 64 MiB tmpfs. It needs root to
// mount and is skipped otherwise.
func TestDiskFullOnSmallFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	// A lazy unmount detaches the file system even when a failed check
	// left the store open.
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	dir := filepath.Join(mnt, "store")

	// The default reserve (128 MiB) exceeds the file system, so every
	// write is rejected up front.
	db, err := OpenDB(dir, DBOptions{NoSyncRefs: true})
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(db)
	small := vmImage(256<<10, 2)
	if _, _, err := s.ImportImage(bytes.NewReader(small), int64(len(small)), IndexOptions{}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("import into a 64 MiB file system with a 128 MiB reserve = %v, want ErrDiskFull", err)
	}
	s.Close()

	// With a small reserve, write until the reserve check stops the import.
	db, err = OpenDB(dir, DBOptions{MinFreeBytes: 8 << 20, NoSyncRefs: true})
	if err != nil {
		t.Fatal(err)
	}
	s = NewStore(db)
	first, _, err := s.ImportImage(bytes.NewReader(small), int64(len(small)), IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateRefs([]RefUpdate{{Name: "refs/heads/main", Expect: ExpectAbsent, New: RefValue{ID: first}}}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 96<<20)
	rand.NewChaCha8([32]byte{3}).Read(big)
	_, _, err = s.ImportImage(bytes.NewReader(big), int64(len(big)), IndexOptions{})
	if !errors.Is(err, ErrDiskFull) {
		s.Close()
		t.Fatalf("import of 96 MiB of random bytes into 64 MiB = %v, want ErrDiskFull", err)
	}
	s.Close()

	db, err = OpenDB(dir, DBOptions{MinFreeBytes: -1})
	if err != nil {
		t.Fatalf("reopen after disk full: %v", err)
	}
	s = NewStore(db)
	defer s.Close()
	v, found, err := db.GetRef("refs/heads/main")
	if err != nil || !found || v.ID != first {
		t.Fatalf("ref after disk full = %v %v %v, want the first import", v, found, err)
	}
	report, err := s.Fsck(map[string]ID{"refs/heads/main": first})
	if err != nil || len(report.Problems) != 0 {
		t.Fatalf("fsck after disk full: %v %+v", err, report)
	}
}

func TestMissingObjectError(t *testing.T) {
	s, _ := openTestDB(t)
	id := Hash(KindChunk, []byte("absent"))
	_, _, err := s.Get(id)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), id.String()) {
		t.Fatalf("Get of a missing object = %v, want ErrNotFound naming it", err)
	}
	if _, err := s.PutCommit(&Commit{Tree: id}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PutCommit with a missing tree = %v, want ErrNotFound", err)
	}
}

func TestOpenRecoversEmptyVlog(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenDB(dir, DBOptions{MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewStore(db).Put(KindChunk, bytes.Repeat([]byte{7}, 4096))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	// A crash between creating a value log file and writing its header
	// leaves an empty file with the next file number.
	vlogs, _ := filepath.Glob(filepath.Join(dbDir(dir), "*.vlog"))
	if len(vlogs) == 0 {
		t.Fatal("no value log file found")
	}
	last := filepath.Base(vlogs[len(vlogs)-1])
	var fid int
	if _, err := fmt.Sscanf(last, "%06d.vlog", &fid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dbDir(dir), fmt.Sprintf("%06d.vlog", fid+1)), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	db, err = OpenDB(dir, DBOptions{MinFreeBytes: -1})
	if err != nil {
		t.Fatalf("open with an empty value log file: %v", err)
	}
	defer db.Close()
	if _, _, err := NewStore(db).Get(id); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRemovesEmptyMemtable covers a kill between badger creating a
// memtable file and sizing it, which leaves an empty .mem file that made
// every later open fail. TestKill9DuringImportAndRefUpdate hit it.
func TestOpenRemovesEmptyMemtable(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenDB(dir, DBOptions{MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewStore(db).Put(KindChunk, bytes.Repeat([]byte{7}, 4096))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	empty := filepath.Join(dbDir(dir), "00042.mem")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = OpenDB(dir, DBOptions{MinFreeBytes: -1})
	if err != nil {
		t.Fatalf("open with an empty memtable file: %v", err)
	}
	defer db.Close()
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("empty memtable file still there: %v", err)
	}
	if _, _, err := NewStore(db).Get(id); err != nil {
		t.Errorf("object written before the crash: %v", err)
	}
}
