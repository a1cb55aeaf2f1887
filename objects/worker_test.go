package objects

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"
)

// runWorker is the body of the test binary when it runs as a worker
// process: args are [exe, mode, store dir, count or seed].
func runWorker(args []string) int {
	if len(args) < 4 {
		fmt.Fprintln(os.Stderr, "worker: want MODE DIR N")
		return 2
	}
	mode, dir := args[1], args[2]
	n, _ := strconv.Atoi(args[3])
	var err error
	switch mode {
	case "write":
		err = workerWrite(dir, n)
	case "read":
		err = workerRead(dir, n)
	case "crash":
		err = workerCrash(dir, uint64(n))
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

func workerOpen(dir string) (*Store, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return Open(dir, Options{
		DB:            DBOptions{MinFreeBytes: -1},
		ServerCommand: []string{"env", helperEnv + "=serve", exe},
		WaitTimeout:   30 * time.Second,
	})
}

// workerWrite makes n commits, each on top of refs/heads/shared with
// compare-and-swap, retrying on conflicts.
func workerWrite(dir string, n int) error {
	s, err := workerOpen(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 2))
	for i := 0; i < n; i++ {
		data := make([]byte, 64<<10)
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		chunk, err := s.Put(KindChunk, data)
		if err != nil {
			return err
		}
		tree, err := NewTree([]TreeEntry{{Name: "memory/blob", Kind: KindChunk, ID: chunk}})
		if err != nil {
			return err
		}
		treeID, err := s.PutTree(tree)
		if err != nil {
			return err
		}
		for attempt := 0; ; attempt++ {
			cur, found, err := s.Backend().GetRef("refs/heads/shared")
			if err != nil {
				return err
			}
			c := &Commit{Tree: treeID, Time: time.Now(), Author: fmt.Sprint(os.Getpid()), Message: fmt.Sprint(i)}
			u := RefUpdate{Name: "refs/heads/shared", Expect: ExpectAbsent, Reason: "worker"}
			if found {
				c.Parents = []ID{cur.ID}
				u.Expect, u.Old = ExpectValue, cur
			}
			id, err := s.PutCommit(c)
			if err != nil {
				return err
			}
			u.New = RefValue{ID: id}
			err = s.Backend().UpdateRefs([]RefUpdate{u})
			var conflict *RefConflictError
			if errors.As(err, &conflict) && attempt < 1000 {
				continue
			}
			if err != nil {
				return err
			}
			break
		}
	}
	return nil
}

// workerRead walks the shared history n times and verifies every object.
func workerRead(dir string, n int) error {
	s, err := workerOpen(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	for i := 0; i < n; i++ {
		v, found, err := s.Backend().GetRef("refs/heads/shared")
		if err != nil {
			return err
		}
		for id := v.ID; found && !id.IsZero(); {
			c, err := s.GetCommit(id)
			if err != nil {
				return err
			}
			if _, err := s.GetTree(c.Tree); err != nil {
				return err
			}
			if len(c.Parents) == 0 {
				break
			}
			id = c.Parents[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// workerCrash imports small images and moves refs/heads/main to them in a
// loop, printing each step, until it is killed. It serves the database in
// process, so a kill stops badger at an arbitrary point.
func workerCrash(dir string, seed uint64) error {
	s, err := Open(dir, Options{DB: DBOptions{MinFreeBytes: -1}, WaitTimeout: 30 * time.Second})
	if err != nil {
		return err
	}
	fmt.Println("opened")
	img := vmImage(1<<20, seed)
	r := rand.New(rand.NewPCG(seed, 3))
	for i := 0; ; i++ {
		for k := 0; k < 8; k++ {
			img[r.IntN(len(img))] = byte(r.Uint32())
		}
		root, _, err := s.ImportImage(bytes.NewReader(img), int64(len(img)), IndexOptions{ChunkSize: 16 << 10, Fanout: 8})
		if err != nil {
			return err
		}
		cur, found, err := s.Backend().GetRef("refs/heads/main")
		if err != nil {
			return err
		}
		u := RefUpdate{Name: "refs/heads/main", Expect: ExpectAbsent, New: RefValue{ID: root}, Reason: "crash test"}
		if found {
			u.Expect, u.Old = ExpectValue, cur
		}
		fmt.Printf("attempt %s %s\n", cur.ID, root)
		if err := s.Backend().UpdateRefs([]RefUpdate{u}); err != nil {
			return err
		}
		fmt.Printf("done %s\n", root)
	}
}
