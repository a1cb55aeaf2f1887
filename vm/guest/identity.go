package guest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spore-vm/spore/objects"
)

// entryIdentity is the tree entry of a forked commit that names the child
// it is. Commits captured from a resumed child keep their child's entry.
const entryIdentity = "identity"

// Identity is who a fork child is. Fork writes it into each child's tree;
// resume hands it to the guest agent with fresh entropy and the host's
// clock, before any command runs.
type Identity struct {
	Version int `json:"version"`
	// Generation counts forks since the first boot: children of a commit
	// of a booted guest are generation 1, their children generation 2.
	Generation int `json:"generation"`
	// GenerationID is unique to one child of one fork, such as
	// "g1-4f0c9a2be1d37785-3".
	GenerationID string `json:"generation_id"`
	// VMID is a random 128-bit ID of the child, in hex.
	VMID string `json:"vm_id"`
	// Batch is the random ID of the fork that made the child, shared by its
	// siblings.
	Batch string `json:"batch"`
	// Index is the child's position in its batch, from 0, and Count the
	// batch size.
	Index int `json:"index"`
	Count int `json:"count"`
	// Name is the child's ref name without refs/forks/, such as
	// "base/000003".
	Name string `json:"name"`
	// Hostname is set in the guest at resume.
	Hostname string `json:"hostname"`
	// Parent is the commit the child was forked from.
	Parent objects.ID `json:"parent"`
}

// Env returns the environment that the guest writes to /run/spore/env and
// gives to hooks and to every later command.
func (id *Identity) Env() []string {
	return []string{
		"SPORE_GENERATION=" + strconv.Itoa(id.Generation),
		"SPORE_CHILD_INDEX=" + strconv.Itoa(id.Index),
		"SPORE_CHILD_COUNT=" + strconv.Itoa(id.Count),
		"SPORE_CHILD_NAME=" + id.Name,
		"SPORE_FORK_BATCH=" + id.Batch,
		"SPORE_VM_ID=" + id.VMID,
		"SPORE_PARENT_COMMIT=" + id.Parent.String(),
	}
}

// validate checks a decoded identity, which comes from the store.
func (id *Identity) validate() error {
	switch {
	case id.Version != 1:
		return fmt.Errorf("identity version %d, this spore reads version 1", id.Version)
	case id.Generation < 1 || id.Count < 1 || id.Index < 0 || id.Index >= id.Count:
		return fmt.Errorf("identity has generation %d, child %d of %d: expected generation >= 1 and 0 <= child < count", id.Generation, id.Index, id.Count)
	case id.GenerationID == "" || id.VMID == "" || id.Batch == "":
		return fmt.Errorf("identity of child %d lacks a generation ID, VM ID or batch ID", id.Index)
	}
	return nil
}

// hostnameFor derives a hostname from a child's name: "base/000003"
// becomes "base-000003". Characters a hostname cannot hold become "-", and
// a long name keeps its last 63 characters, where the child numbers are.
func hostnameFor(name string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	host := b.String()
	if len(host) > 63 {
		host = host[len(host)-63:]
	}
	host = strings.Trim(host, "-")
	if host == "" {
		return "spore"
	}
	return host
}

// loadIdentity reads the optional identity entry of a tree.
func loadIdentity(store *objects.Store, tree *objects.Tree) (*Identity, error) {
	e, ok := tree.Entry(entryIdentity)
	if !ok {
		return nil, nil
	}
	_, data, err := store.Get(e.ID)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", entryIdentity, err)
	}
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("decode %s: %w", entryIdentity, err)
	}
	if err := id.validate(); err != nil {
		return nil, err
	}
	return &id, nil
}

// identityEntry stores id and returns its tree entry.
func identityEntry(store *objects.Store, id *Identity) (objects.TreeEntry, error) {
	data, err := json.Marshal(id)
	if err != nil {
		return objects.TreeEntry{}, err
	}
	oid, err := store.Put(objects.KindChunk, data)
	if err != nil {
		return objects.TreeEntry{}, fmt.Errorf("store %s: %w", entryIdentity, err)
	}
	return objects.TreeEntry{Name: entryIdentity, Kind: objects.KindChunk, ID: oid}, nil
}
