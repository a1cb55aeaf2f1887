package objects

import (
	"fmt"
	"sort"
	"time"
)

const commitVersion byte = 1

// Commit is one captured state: a tree, its parents and metadata.
type Commit struct {
	// Tree is the ID of the commit's named tree.
	Tree ID `json:"tree"`
	// Parents are the commits this one was captured or forked from, in
	// order; empty for a first capture.
	Parents []ID `json:"parents"`
	// Platform is the platform contract that restore checks before it
	// resumes the commit (arch, backend, board version, vCPU features, ...).
	Platform map[string]string `json:"platform"`
	// Generation identifies this fork generation; children of one commit
	// get distinct values.
	Generation string `json:"generation"`
	// Time is when the commit was made, stored in nanoseconds (UTC).
	Time time.Time `json:"time"`
	// Author names who or what made the commit.
	Author string `json:"author"`
	// Message describes the commit.
	Message string `json:"message"`
}

// Encode returns the commit's canonical payload. Platform keys are written
// sorted, so equal commits encode equally.
func (c *Commit) Encode() []byte {
	e := encoder{}
	e.byte1(commitVersion)
	e.id(c.Tree)
	e.uvarint(uint64(len(c.Parents)))
	for _, p := range c.Parents {
		e.id(p)
	}
	keys := make([]string, 0, len(c.Platform))
	for k := range c.Platform {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	e.uvarint(uint64(len(keys)))
	for _, k := range keys {
		e.str(k)
		e.str(c.Platform[k])
	}
	e.str(c.Generation)
	e.varint(c.Time.UnixNano())
	e.str(c.Author)
	e.str(c.Message)
	return e.buf
}

// DecodeCommit parses a commit payload and checks that it is canonical.
func DecodeCommit(payload []byte) (*Commit, error) {
	d := decoder{buf: payload}
	if v := d.byte1(); d.err == nil && v != commitVersion {
		return nil, fmt.Errorf("%w: commit version %d is not supported (want %d)", ErrCorrupt, v, commitVersion)
	}
	c := &Commit{Tree: d.id()}
	n := d.count(IDSize)
	for i := 0; i < n && d.err == nil; i++ {
		c.Parents = append(c.Parents, d.id())
	}
	n = d.count(2)
	c.Platform = make(map[string]string, n)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		k, v := d.str(), d.str()
		if d.err == nil && i > 0 && k <= prev {
			d.fail("platform keys are not sorted and unique at %q", k)
		}
		c.Platform[k], prev = v, k
	}
	c.Generation = d.str()
	c.Time = time.Unix(0, d.varint()).UTC()
	c.Author = d.str()
	c.Message = d.str()
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}
