package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/vm/guest"
)

// ForkCmd writes child commits of a captured commit.
type ForkCmd struct {
	Count   int    `short:"n" required:"" help:"Number of children (1 to 100000)."`
	Name    string `placeholder:"PATTERN" help:"Child names with one %d for the child index, such as worker-%d (default %06d)."`
	Force   bool   `help:"Replace children refs that exist already."`
	Message string `short:"m" help:"Message of the child commits (default: fork N/COUNT of REF)."`
	Rev     string `arg:"" name:"REF" help:"The commit to fork: a ref or a commit ID."`
}

// forkSummary is the --json output of spore fork.
type forkSummary struct {
	Parent    string            `json:"parent"`
	ParentRef string            `json:"parent_ref,omitempty"`
	Namespace string            `json:"namespace"`
	Batch     string            `json:"batch"`
	Children  []guest.ForkChild `json:"children"`
	Stats     guest.ForkStats   `json:"stats"`
}

func (c *ForkCmd) Run(g *Globals) error {
	store, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer store.Close()

	parent, parentRef, err := resolveArgument(store, r, "fork", c.Rev)
	if err != nil {
		return err
	}

	children, stats, err := guest.Fork(store, r, parent, parentRef, guest.ForkOptions{
		Count:   c.Count,
		Pattern: c.Name,
		Force:   c.Force,
		Author:  captureAuthor(),
		Message: c.Message,
	})
	if err != nil {
		var invalid *guest.InvalidForkError
		if errors.As(err, &invalid) {
			return withExitCode(ExitUsage, err)
		}
		return err
	}

	if g.JSON {
		return writeJSON(os.Stdout, forkSummary{
			Parent:    parent.String(),
			ParentRef: parentRef,
			Namespace: refs.ForkNamespace(parentRef, parent),
			Batch:     children[0].Identity.Batch,
			Children:  children,
			Stats:     stats,
		})
	}
	for _, child := range children {
		fmt.Printf("%s %s\n", child.Commit.Short(), refs.ShortName(child.Ref))
	}
	fmt.Fprintf(os.Stderr, "spore: forked %s into %d children under %s (%d objects, %d bytes)\n",
		c.Rev, len(children), refs.ShortName(refs.ForkNamespace(parentRef, parent)), stats.Objects, stats.Bytes)
	return nil
}
