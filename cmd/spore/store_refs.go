package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

// RefsCmd lists refs.
type RefsCmd struct {
	Prefix string `arg:"" optional:"" help:"List only refs whose full name starts with this, such as refs/tags/."`
}

func (c *RefsCmd) Run(g *Globals) error {
	s, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	list, err := r.List(c.Prefix)
	if err != nil || g.JSON {
		return listJSON(list, err)
	}
	for _, ref := range list {
		target := ref.Target.String()
		if ref.Target.IsZero() {
			target = fmt.Sprintf("%-64s", "(unborn)")
		}
		if ref.Value.Symbolic != "" {
			fmt.Printf("%s %s -> %s\n", target, ref.Name, ref.Value.Symbolic)
			continue
		}
		fmt.Printf("%s %s\n", target, ref.Name)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TagCmd creates, deletes or lists tags.
type TagCmd struct {
	Name     string `arg:"" optional:"" help:"Tag name, without refs/tags/. Without a name, list tags."`
	Revision string `arg:"" optional:"" default:"HEAD" help:"Ref or commit ID to tag (default HEAD)."`
	Delete   bool   `short:"d" help:"Delete the tag."`
	Force    bool   `short:"f" help:"Move an existing tag."`
}

func (c *TagCmd) Run(g *Globals) error {
	s, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	if c.Name == "" {
		if c.Delete {
			return withExitCode(ExitUsage, fmt.Errorf("tag -d needs the name of the tag to delete"))
		}
		return (&RefsCmd{Prefix: refs.TagsPrefix}).listWith(g, r)
	}
	if err := refs.ValidateShortName(c.Name); err != nil {
		return withExitCode(ExitUsage, err)
	}
	name := refs.TagsPrefix + c.Name
	old, exists, err := r.Get(name)
	if err != nil {
		return err
	}

	if c.Delete {
		if !exists {
			return fmt.Errorf("tag %s does not exist: %w", c.Name, objects.ErrNotFound)
		}
		if err := r.Delete(name, old.ID, "tag -d"); err != nil {
			return err
		}
		return report(g, map[string]any{"deleted": name, "was": old.ID}, fmt.Sprintf("Deleted tag %s (was %s)", c.Name, old.ID.Short()))
	}

	id, err := resolveRevision(s, r, c.Revision)
	if err != nil {
		return err
	}
	if exists && !c.Force {
		return withExitCode(ExitUsage, fmt.Errorf("tag %s already exists at %s; use --force to move it", c.Name, old.ID.Short()))
	}
	if err := r.Set(name, old.ID, id, "tag "+c.Revision); err != nil {
		return err
	}
	return report(g, map[string]any{"tag": name, "id": id}, fmt.Sprintf("Tagged %s as %s", id.Short(), c.Name))
}

// listWith prints refs with a prefix, as RefsCmd.Run does.
func (c *RefsCmd) listWith(g *Globals, r *refs.Refs) error {
	list, err := r.List(c.Prefix)
	if err != nil || g.JSON {
		return listJSON(list, err)
	}
	for _, ref := range list {
		fmt.Printf("%s %s\n", ref.Target, refs.ShortName(ref.Name))
	}
	return nil
}

// listJSON prints refs as a JSON array, or returns err.
func listJSON(list []refs.Ref, err error) error {
	if err != nil {
		return err
	}
	if list == nil {
		list = []refs.Ref{}
	}
	return writeJSON(os.Stdout, list)
}

// report prints v as JSON with --json and text otherwise.
func report(g *Globals, v any, text string) error {
	if g.JSON {
		return writeJSON(os.Stdout, v)
	}
	fmt.Println(text)
	return nil
}
