package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spore-vm/spore/objects"
)

// ShowCmd prints one object.
type ShowCmd struct {
	Object string `arg:"" help:"Ref, object ID (4 or more hex digits), or REV:PATH for a tree entry such as main:vcpu/0."`
	Raw    bool   `help:"Write the object's payload bytes to stdout instead of a description."`
	All    bool   `help:"List every child of a chunk index node, not only the first 16."`
}

// maxListedChildren is how many index node children show lists without --all.
const maxListedChildren = 16

func (c *ShowCmd) Run(g *Globals) error {
	s, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()

	rev, entryPath, hasPath := strings.Cut(c.Object, ":")
	id, err := resolveRevision(s, r, rev)
	if err != nil {
		return err
	}
	if hasPath {
		if id, err = lookupPath(s, id, entryPath); err != nil {
			return err
		}
	}
	kind, payload, err := s.Get(id)
	if err != nil {
		return err
	}
	if c.Raw {
		_, err := os.Stdout.Write(payload)
		return err
	}
	if g.JSON {
		return showJSON(s, id, kind, payload)
	}
	return showText(os.Stdout, s, id, kind, payload, entryPath, c.All)
}

// lookupPath returns the ID of a tree entry below a commit or tree.
func lookupPath(s *objects.Store, id objects.ID, entryPath string) (objects.ID, error) {
	kind, _, err := s.Get(id)
	if err != nil {
		return id, err
	}
	if kind == objects.KindCommit {
		cm, err := s.GetCommit(id)
		if err != nil {
			return id, err
		}
		id = cm.Tree
	}
	tree, err := s.GetTree(id)
	if err != nil {
		return id, err
	}
	entry, ok := tree.Entry(entryPath)
	if !ok {
		var names []string
		for _, e := range tree.Entries {
			names = append(names, e.Name)
		}
		return id, withExitCode(ExitUsage, fmt.Errorf("tree %s has no entry %q; it has: %s", id.Short(), entryPath, strings.Join(names, ", ")))
	}
	return entry.ID, nil
}

func showText(w io.Writer, s *objects.Store, id objects.ID, kind objects.Kind, payload []byte, entryPath string, all bool) error {
	switch kind {
	case objects.KindCommit:
		cm, err := objects.DecodeCommit(payload)
		if err != nil {
			return err
		}
		printCommit(w, id, cm, nil)
		fmt.Fprintf(w, "Tree:       %s\n", cm.Tree)
		for _, k := range sortedKeys(cm.Platform) {
			fmt.Fprintf(w, "Platform:   %s=%s\n", k, cm.Platform[k])
		}
		return nil
	case objects.KindChunk:
		fmt.Fprintf(w, "chunk %s\n", id)
		return objects.FormatterFor(entryPath)(w, payload)
	}
	form, err := objects.TreeForm(payload)
	if err != nil {
		return err
	}
	if form == 'n' {
		t, err := objects.DecodeTree(payload)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "tree %s\n", id)
		for _, e := range t.Entries {
			fmt.Fprintf(w, "%-6s %s  %s\n", e.Kind, e.ID, e.Name)
		}
		return nil
	}
	n, err := objects.DecodeIndexNode(payload)
	if err != nil {
		return err
	}
	present := 0
	for _, ch := range n.Children {
		if !ch.IsZero() {
			present++
		}
	}
	fmt.Fprintf(w, "chunk index node %s\n", id)
	fmt.Fprintf(w, "size %d bytes, chunk size %d, fan-out %d, level %d\n", n.Size, n.ChunkSize, n.Fanout, n.Level)
	fmt.Fprintf(w, "%d child slots: %d present, %d holes\n", len(n.Children), present, len(n.Children)-present)
	listed := 0
	for i, ch := range n.Children {
		if ch.IsZero() {
			continue
		}
		if listed == maxListedChildren && !all {
			fmt.Fprintf(w, "... %d more; use --all to list them\n", present-listed)
			break
		}
		fmt.Fprintf(w, "%#014x  %s\n", uint64(i)*n.ChildSpan(), ch)
		listed++
	}
	return nil
}

// showJSON prints an object as JSON with its kind and decoded fields.
func showJSON(s *objects.Store, id objects.ID, kind objects.Kind, payload []byte) error {
	out := map[string]any{"id": id, "kind": kind.String()}
	switch kind {
	case objects.KindCommit:
		cm, err := objects.DecodeCommit(payload)
		if err != nil {
			return err
		}
		out["commit"] = toJSON(id, cm, nil, nil)
	case objects.KindChunk:
		out["size"] = len(payload)
	default:
		form, err := objects.TreeForm(payload)
		if err != nil {
			return err
		}
		if form == 'n' {
			t, err := objects.DecodeTree(payload)
			if err != nil {
				return err
			}
			var entries []map[string]any
			for _, e := range t.Entries {
				entries = append(entries, map[string]any{"name": e.Name, "kind": e.Kind.String(), "id": e.ID})
			}
			out["entries"] = entries
		} else {
			n, err := objects.DecodeIndexNode(payload)
			if err != nil {
				return err
			}
			out["index"] = map[string]any{"size": n.Size, "chunk_size": n.ChunkSize, "fanout": n.Fanout, "level": n.Level, "children": n.Children}
		}
	}
	return writeJSON(os.Stdout, out)
}
