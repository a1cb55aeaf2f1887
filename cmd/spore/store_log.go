package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

// LogCmd prints the history of a commit.
type LogCmd struct {
	Revision string `arg:"" optional:"" default:"HEAD" help:"Ref or commit ID to start from (default HEAD)."`
	MaxCount int    `short:"n" help:"Show at most this many commits; 0 shows all." default:"0"`
	Graph    bool   `help:"Show the fork tree around the revision: every commit that a ref reaches and that shares a root commit with it."`
}

// logEntry is one commit in the output of spore log.
type logEntry struct {
	ID     objects.ID `json:"id"`
	Refs   []string   `json:"refs"`
	Commit *objects.Commit
}

// logEntryJSON flattens logEntry for --json.
type logEntryJSON struct {
	ID         objects.ID        `json:"id"`
	Refs       []string          `json:"refs"`
	Tree       objects.ID        `json:"tree"`
	Parents    []objects.ID      `json:"parents"`
	Platform   map[string]string `json:"platform"`
	Generation string            `json:"generation"`
	Time       time.Time         `json:"time"`
	Author     string            `json:"author"`
	Message    string            `json:"message"`
	Children   []objects.ID      `json:"children,omitempty"`
}

func (c *LogCmd) Run(g *Globals) error {
	s, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	start, err := resolveRevision(s, r, c.Revision)
	if err != nil {
		return err
	}
	names, err := refNamesByTarget(r)
	if err != nil {
		return err
	}
	if c.Graph {
		return c.runGraph(g, s, r, start, names)
	}

	entries, err := history(s, start, c.MaxCount)
	if err != nil {
		return err
	}
	if g.JSON {
		out := make([]logEntryJSON, 0, len(entries))
		for _, e := range entries {
			out = append(out, toJSON(e.ID, e.Commit, names[e.ID], nil))
		}
		return writeJSON(os.Stdout, out)
	}
	for i, e := range entries {
		if i > 0 {
			fmt.Println()
		}
		printCommit(os.Stdout, e.ID, e.Commit, names[e.ID])
	}
	return nil
}

func toJSON(id objects.ID, c *objects.Commit, names []string, children []objects.ID) logEntryJSON {
	if names == nil {
		names = []string{}
	}
	parents := c.Parents
	if parents == nil {
		parents = []objects.ID{}
	}
	return logEntryJSON{
		ID: id, Refs: names, Tree: c.Tree, Parents: parents, Platform: c.Platform,
		Generation: c.Generation, Time: c.Time, Author: c.Author, Message: c.Message, Children: children,
	}
}

// history returns the commits reachable from start, newest first.
func history(s *objects.Store, start objects.ID, max int) ([]logEntry, error) {
	seen := map[objects.ID]bool{start: true}
	first, err := s.GetCommit(start)
	if err != nil {
		return nil, err
	}
	queue := []logEntry{{ID: start, Commit: first}}
	var out []logEntry
	for len(queue) > 0 && (max <= 0 || len(out) < max) {
		sort.SliceStable(queue, func(i, j int) bool { return queue[i].Commit.Time.After(queue[j].Commit.Time) })
		e := queue[0]
		queue = queue[1:]
		out = append(out, e)
		for _, p := range e.Commit.Parents {
			if seen[p] {
				continue
			}
			seen[p] = true
			pc, err := s.GetCommit(p)
			if err != nil {
				return out, fmt.Errorf("parent of commit %s: %w", e.ID, err)
			}
			queue = append(queue, logEntry{ID: p, Commit: pc})
		}
	}
	return out, nil
}

// printCommit prints one commit in the style of git log.
func printCommit(w io.Writer, id objects.ID, c *objects.Commit, names []string) {
	decor := ""
	if len(names) > 0 {
		decor = " (" + strings.Join(names, ", ") + ")"
	}
	fmt.Fprintf(w, "commit %s%s\n", id, decor)
	for _, p := range c.Parents {
		fmt.Fprintf(w, "Parent:     %s\n", p)
	}
	if c.Author != "" {
		fmt.Fprintf(w, "Author:     %s\n", c.Author)
	}
	fmt.Fprintf(w, "Date:       %s\n", c.Time.Local().Format(time.RFC3339))
	if c.Generation != "" {
		fmt.Fprintf(w, "Generation: %s\n", c.Generation)
	}
	if c.Message != "" {
		fmt.Fprintln(w)
		for _, line := range strings.Split(strings.TrimRight(c.Message, "\n"), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}

// runGraph prints the fork tree that contains start.
func (c *LogCmd) runGraph(g *Globals, s *objects.Store, r *refs.Refs, start objects.ID, names map[objects.ID][]string) error {
	commits, err := reachableCommits(s, r, start)
	if err != nil {
		return err
	}
	children := map[objects.ID][]objects.ID{}
	var roots []objects.ID
	for id, cm := range commits {
		if len(cm.Parents) == 0 {
			roots = append(roots, id)
			continue
		}
		children[cm.Parents[0]] = append(children[cm.Parents[0]], id)
	}
	byTime := func(ids []objects.ID) {
		sort.Slice(ids, func(i, j int) bool {
			ti, tj := commits[ids[i]].Time, commits[ids[j]].Time
			if !ti.Equal(tj) {
				return ti.Before(tj)
			}
			return ids[i].String() < ids[j].String()
		})
	}
	byTime(roots)
	for _, kids := range children {
		byTime(kids)
	}
	component := componentOf(start, commits, children)

	if g.JSON {
		var out []logEntryJSON
		var walk func(id objects.ID)
		walk = func(id objects.ID) {
			out = append(out, toJSON(id, commits[id], names[id], children[id]))
			for _, k := range children[id] {
				walk(k)
			}
		}
		for _, root := range roots {
			if component[root] {
				walk(root)
			}
		}
		return writeJSON(os.Stdout, out)
	}

	var walk func(id objects.ID, prefix string, last, top bool)
	walk = func(id objects.ID, prefix string, last, top bool) {
		branch, next := "├─", prefix+"│ "
		if last {
			branch, next = "└─", prefix+"  "
		}
		if top {
			branch, next = "", ""
		}
		cm := commits[id]
		mark := "*"
		if id == start {
			mark = "@"
		}
		line := fmt.Sprintf("%s%s%s %s  %s", prefix, branch, mark, id.Short(), firstLine(cm.Message))
		if len(names[id]) > 0 {
			line += "  [" + strings.Join(names[id], ", ") + "]"
		}
		fmt.Println(line)
		kids := children[id]
		for i, k := range kids {
			walk(k, next, i == len(kids)-1, false)
		}
	}
	for _, root := range roots {
		if component[root] {
			walk(root, "", true, true)
		}
	}
	return nil
}

// reachableCommits returns the commits that start and every ref reach.
func reachableCommits(s *objects.Store, r *refs.Refs, start objects.ID) (map[objects.ID]*objects.Commit, error) {
	list, err := r.List("")
	if err != nil {
		return nil, err
	}
	commits := map[objects.ID]*objects.Commit{}
	stack := []objects.ID{start}
	for _, ref := range list {
		if !ref.Target.IsZero() {
			kind, _, err := s.Get(ref.Target)
			if err == nil && kind == objects.KindCommit {
				stack = append(stack, ref.Target)
			}
		}
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if commits[id] != nil {
			continue
		}
		cm, err := s.GetCommit(id)
		if err != nil {
			return nil, err
		}
		commits[id] = cm
		stack = append(stack, cm.Parents...)
	}
	return commits, nil
}

// componentOf returns the commits connected to start through first-parent
// links, in either direction.
func componentOf(start objects.ID, commits map[objects.ID]*objects.Commit, children map[objects.ID][]objects.ID) map[objects.ID]bool {
	root := start
	for len(commits[root].Parents) > 0 {
		root = commits[root].Parents[0]
	}
	out := map[objects.ID]bool{}
	stack := []objects.ID{root}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		out[id] = true
		stack = append(stack, children[id]...)
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
