package objects

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
)

// Problem is a missing or corrupt object that fsck found.
type Problem struct {
	// ID is the object that is missing or corrupt.
	ID ID `json:"id"`
	// Missing is true when the object is not stored; otherwise it is
	// stored but corrupt.
	Missing bool `json:"missing"`
	// Error describes the problem.
	Error string `json:"error"`
	// NeededBy lists the roots (ref names or reflog entries) that reach the
	// object.
	NeededBy []string `json:"needed_by"`
}

// FsckReport is the result of Fsck.
type FsckReport struct {
	// Objects is the number of distinct objects checked.
	Objects int `json:"objects"`
	// Problems lists missing and corrupt objects, sorted by ID.
	Problems []Problem `json:"problems"`
}

// Fsck reads every object that the roots reach, verifies its hash and its
// encoding, and reports the missing and corrupt ones with the names of the
// roots that need them. Chunks are verified in parallel. It returns an
// error only when the store itself fails.
func (s *Store) Fsck(roots map[string]ID) (*FsckReport, error) {
	links := make(map[ID][]ID)
	bad := make(map[ID]Problem)
	seen := make(map[ID]bool)
	var chunks []ID

	// Walk the non-chunk objects one by one and collect chunk IDs.
	var stack []Link
	for _, id := range roots {
		stack = append(stack, Link{ID: id})
	}
	for len(stack) > 0 {
		l := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[l.ID] {
			continue
		}
		seen[l.ID] = true
		if l.Kind == KindChunk {
			chunks = append(chunks, l.ID)
			continue
		}
		kind, payload, err := s.Get(l.ID)
		if err == nil && l.Kind != 0 && kind != l.Kind {
			err = fmt.Errorf("%w: object %s is a %s, but its parent lists it as a %s", ErrCorrupt, l.ID, kind, l.Kind)
		}
		var children []Link
		if err == nil {
			children, err = Links(kind, payload)
		}
		if err != nil {
			if isStoreFailure(err) {
				return nil, err
			}
			bad[l.ID] = Problem{ID: l.ID, Missing: errors.Is(err, ErrNotFound), Error: err.Error()}
			continue
		}
		for _, c := range children {
			links[l.ID] = append(links[l.ID], c.ID)
		}
		stack = append(stack, children...)
	}

	if err := s.verifyChunks(chunks, bad); err != nil {
		return nil, err
	}

	report := &FsckReport{Objects: len(seen)}
	if len(bad) == 0 {
		return report, nil
	}
	needed := make(map[ID][]string)
	for name, root := range roots {
		visited := map[ID]bool{}
		walk := []ID{root}
		for len(walk) > 0 {
			id := walk[len(walk)-1]
			walk = walk[:len(walk)-1]
			if visited[id] {
				continue
			}
			visited[id] = true
			if _, ok := bad[id]; ok {
				needed[id] = append(needed[id], name)
			}
			walk = append(walk, links[id]...)
		}
	}
	for id, p := range bad {
		p.NeededBy = needed[id]
		sort.Strings(p.NeededBy)
		report.Problems = append(report.Problems, p)
	}
	sort.Slice(report.Problems, func(i, j int) bool {
		return report.Problems[i].ID.String() < report.Problems[j].ID.String()
	})
	return report, nil
}

// isStoreFailure reports whether err is a failure of the store itself
// (closed, lost server, I/O) rather than a problem of one object, which
// wraps ErrNotFound or ErrCorrupt.
func isStoreFailure(err error) bool {
	return !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt)
}

// verifyChunks reads chunks in parallel and adds the bad ones to bad.
func (s *Store) verifyChunks(chunks []ID, bad map[ID]Problem) error {
	var mu sync.Mutex
	var fail firstError
	work := make(chan ID, 256)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				kind, _, err := s.Get(id)
				if err == nil && kind != KindChunk {
					err = fmt.Errorf("%w: object %s is a %s, but its parent lists it as a chunk", ErrCorrupt, id, kind)
				}
				if err == nil {
					continue
				}
				if isStoreFailure(err) {
					fail.set(err)
					continue
				}
				mu.Lock()
				bad[id] = Problem{ID: id, Missing: errors.Is(err, ErrNotFound), Error: err.Error()}
				mu.Unlock()
			}
		}()
	}
	for _, id := range chunks {
		work <- id
	}
	close(work)
	wg.Wait()
	return fail.err
}
