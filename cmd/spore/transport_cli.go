package main

import (
	"fmt"
	"strings"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/transport"
)

// TransportCommands are the commands that move commits between stores:
// through OCI registries and through bundle files.
type TransportCommands struct {
	Push   PushCmd   `cmd:"" help:"Upload a commit, and with --children its fork children, to an OCI registry."`
	Pull   PullCmd   `cmd:"" help:"Download a commit, or one fork child, from an OCI registry into the store."`
	Pack   PackCmd   `cmd:"" help:"Write a commit, and with --children its fork children, to an OCI image layout tar."`
	Unpack UnpackCmd `cmd:"" help:"Import a bundle that spore pack wrote into the store."`
}

// export is the source of a push or pack: a commit of the open store, the
// ref that named it and, with --children, its fork children.
type export struct {
	store    *objects.Store
	commit   objects.ID
	ref      string // the full ref name, or the revision as given
	children []transport.Child
}

// openExport opens the store and resolves the revision that push or pack
// sends, listing its fork children when children is set.
func (g *Globals) openExport(revision string, children bool) (*export, error) {
	s, r, err := g.openStore()
	if err != nil {
		return nil, err
	}
	src := &export{store: s}
	src.commit, src.ref, err = refs.Revision(s, r, revision)
	if err != nil {
		s.Close()
		return nil, revisionError(err)
	}
	if children {
		if src.children, err = forkChildren(r, src.commit, src.ref); err != nil {
			s.Close()
			return nil, err
		}
	}
	return src, nil
}

// Close closes the store of the export.
func (e *export) Close() error { return e.store.Close() }

// forkChildren returns the commits under the fork namespace of the
// revision (see refs.ForkNamespace), where spore fork writes children.
func forkChildren(r *refs.Refs, id objects.ID, refName string) ([]transport.Child, error) {
	prefix := refs.ForkNamespace(refName, id)
	list, err := r.List(prefix)
	if err != nil {
		return nil, err
	}
	var children []transport.Child
	for _, ref := range list {
		if ref.Target.IsZero() {
			continue
		}
		children = append(children, transport.Child{Name: strings.TrimPrefix(ref.Name, prefix), Commit: ref.Target})
	}
	if len(children) == 0 {
		return nil, fmt.Errorf("--children: no fork children under %s (fork the commit first, or leave out --children)", prefix)
	}
	return children, nil
}
