package guest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

// MaxForkCount bounds the children of one fork. A fork is cheap, but a
// batch this large is more likely a typing error than a plan.
const MaxForkCount = 100000

// DefaultForkPattern names children 000000, 000001, and so on.
const DefaultForkPattern = "%06d"

// ForkOptions describe a fork.
type ForkOptions struct {
	// Count is the number of children, 1 to MaxForkCount.
	Count int
	// Pattern names the children with one %d verb (a width such as %03d
	// is allowed) that takes the child index; empty means
	// DefaultForkPattern. A pattern without %d names a single child.
	Pattern string
	// Force replaces children refs that exist already; without it such a
	// fork fails and writes nothing.
	Force bool
	// Author and Message go into each child commit; an empty Message
	// becomes "fork N/COUNT of PARENT".
	Author  string
	Message string
}

// ForkChild is one child that Fork wrote.
type ForkChild struct {
	Ref      string     `json:"ref"`
	Commit   objects.ID `json:"commit"`
	Identity Identity   `json:"identity"`
}

// ForkStats count what a fork wrote.
type ForkStats struct {
	Objects int `json:"objects"`
	// Bytes is the canonical size of the new objects, before compression.
	Bytes int `json:"bytes"`
}

// InvalidForkError is a fork that its options or its parent make
// impossible. Nothing was written.
type InvalidForkError struct{ Reason string }

func (e *InvalidForkError) Error() string { return e.Reason }

func invalidFork(format string, args ...any) error {
	return &InvalidForkError{Reason: fmt.Sprintf(format, args...)}
}

// patternVerb matches the one integer verb a fork pattern may contain.
var patternVerb = regexp.MustCompile(`%0?[0-9]*d`)

// childNames expands the pattern for count children under namespace.
func childNames(namespace, pattern string, count int) ([]string, error) {
	if count < 1 || count > MaxForkCount {
		return nil, invalidFork("invalid --count %d: give 1 to %d children", count, MaxForkCount)
	}
	if pattern == "" {
		pattern = DefaultForkPattern
	}
	verbs := patternVerb.FindAllStringIndex(pattern, -1)
	if len(verbs) > 1 || strings.Count(pattern, "%") != len(verbs) {
		return nil, invalidFork("invalid --name %q: use one %%d (such as worker-%%d or %%03d) and no other %% verb", pattern)
	}
	if len(verbs) == 0 && count > 1 {
		return nil, invalidFork("invalid --name %q for %d children: add %%d, which takes the child index, so each child gets its own name", pattern, count)
	}
	names := make([]string, count)
	for i := range names {
		name := pattern
		if len(verbs) == 1 {
			name = fmt.Sprintf(pattern, i)
		}
		full := namespace + name
		if err := refs.ValidateName(full); err != nil {
			return nil, invalidFork("invalid --name %q: child %d would be %s: %v", pattern, i, full, err)
		}
		names[i] = full
	}
	return names, nil
}

// Fork writes opts.Count children of the commit parent. Each child commit
// has the parent's tree with its own identity entry, and a ref under the
// fork namespace of parentRef (see ForkNamespace). No chunk is copied.
// The objects are written in one batch and the refs in one atomic update,
// so a failed fork adds no ref. Bad options fail before anything is
// written, with an *InvalidForkError.
func Fork(store *objects.Store, r *refs.Refs, parent objects.ID, parentRef string, opts ForkOptions) ([]ForkChild, ForkStats, error) {
	var stats ForkStats
	names, err := childNames(refs.ForkNamespace(parentRef, parent), opts.Pattern, opts.Count)
	if err != nil {
		return nil, stats, err
	}
	parentName := parentRef
	if parentName == "" {
		parentName = parent.Short()
	}

	commit, err := store.GetCommit(parent)
	if err != nil {
		return nil, stats, fmt.Errorf("read commit %s: %w", parentName, err)
	}
	tree, err := store.GetTree(commit.Tree)
	if err != nil {
		return nil, stats, fmt.Errorf("read the tree of %s: %w", parentName, err)
	}
	if _, ok := tree.Entry(entryMemory); !ok {
		return nil, stats, invalidFork("%s is not a captured VM (its tree has no memory entry): fork a commit made by spore run --capture", parentName)
	}
	parentIdentity, err := loadIdentity(store, tree)
	if err != nil {
		return nil, stats, fmt.Errorf("read %s: %w", parentName, err)
	}
	if !opts.Force {
		if err := checkFree(r, names); err != nil {
			return nil, stats, err
		}
	}

	generation := 1
	if parentIdentity != nil {
		generation = parentIdentity.Generation + 1
	}
	batch := randomHex(8)
	message := opts.Message
	now := time.Now().UTC()

	var batchObjects []objects.RawObject
	put := func(kind objects.Kind, payload []byte) objects.ID {
		raw := objects.Encode(kind, payload)
		id := objects.Hash(kind, payload)
		batchObjects = append(batchObjects, objects.RawObject{ID: id, Raw: raw})
		stats.Objects++
		stats.Bytes += len(raw)
		return id
	}

	children := make([]ForkChild, len(names))
	updates := make([]refs.Update, len(names))
	for i, ref := range names {
		short := strings.TrimPrefix(ref, refs.ForksPrefix)
		id := Identity{
			Version:      1,
			Generation:   generation,
			GenerationID: fmt.Sprintf("g%d-%s-%d", generation, batch, i),
			VMID:         randomHex(16),
			Batch:        batch,
			Index:        i,
			Count:        len(names),
			Name:         short,
			Hostname:     hostnameFor(short),
			Parent:       parent,
		}
		data, err := json.Marshal(&id)
		if err != nil {
			return nil, stats, err
		}
		childTree, err := withEntry(tree, objects.TreeEntry{Name: entryIdentity, Kind: objects.KindChunk,
			ID: put(objects.KindChunk, data)})
		if err != nil {
			return nil, stats, err
		}
		msg := message
		if msg == "" {
			msg = fmt.Sprintf("fork %d/%d of %s", i+1, len(names), parentName)
		}
		child := &objects.Commit{
			Tree:       put(objects.KindTree, childTree.Encode()),
			Parents:    []objects.ID{parent},
			Platform:   commit.Platform,
			Generation: id.GenerationID,
			Time:       now,
			Author:     opts.Author,
			Message:    msg,
		}
		childID := put(objects.KindCommit, child.Encode())
		children[i] = ForkChild{Ref: ref, Commit: childID, Identity: id}
		updates[i] = refs.Update{Name: ref, New: childID, Force: opts.Force, Reason: "fork " + parentName}
	}

	if err := store.PutRawBatch(batchObjects); err != nil {
		return nil, stats, fmt.Errorf("store the children of %s: %w", parentName, err)
	}
	if err := r.Apply(updates...); err != nil {
		var conflict *objects.RefConflictError
		if errors.As(err, &conflict) {
			return nil, stats, fmt.Errorf("%w: another process wrote a child ref during the fork; run it again, with --force to replace", err)
		}
		return nil, stats, fmt.Errorf("write the refs of the children of %s: %w", parentName, err)
	}
	return children, stats, nil
}

// checkFree fails, naming the first one, when a ref of names exists.
func checkFree(r *refs.Refs, names []string) error {
	existing := 0
	first := ""
	for _, name := range names {
		_, ok, err := r.Get(name)
		if err != nil {
			return err
		}
		if ok {
			if existing == 0 {
				first = name
			}
			existing++
		}
	}
	if existing > 0 {
		return invalidFork("%s (and %d more of the %d children) exists already: pass --force to replace the children, or --name for new names", first, existing-1, len(names))
	}
	return nil
}

// withEntry returns a copy of tree with e added, replacing an entry of the
// same name.
func withEntry(tree *objects.Tree, e objects.TreeEntry) (*objects.Tree, error) {
	entries := make([]objects.TreeEntry, 0, len(tree.Entries)+1)
	for _, old := range tree.Entries {
		if old.Name != e.Name {
			entries = append(entries, old)
		}
	}
	return objects.NewTree(append(entries, e))
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
