package transport

import (
	"context"
	"fmt"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

// PackOptions control Pack.
type PackOptions struct {
	// Ref is the full ref name the commit was packed from; Unpack
	// recreates it. Empty packs the commit without a ref, tagged by its ID.
	Ref string
	// Children are packed with the commit, as Push sends them.
	Children []Child
	// Progress, when set, receives progress events.
	Progress func(Progress)
}

// Pack writes commit id, its ancestors and opts.Children to a bundle file
// at path: the same manifests and layers that Push sends to a registry, in
// an OCI image layout tar. The file appears only when the bundle is
// complete.
func Pack(ctx context.Context, store *objects.Store, path string, id objects.ID, opts PackOptions) (*PushResult, error) {
	bundle, err := CreateBundle(path)
	if err != nil {
		return nil, err
	}

	tag := id.String()
	if opts.Ref != "" {
		tag = refs.ShortName(opts.Ref)
	}
	result, err := Push(ctx, store, bundle, id, PushOptions{Tag: tag, Children: opts.Children, Progress: opts.Progress})
	if err != nil {
		bundle.Abort()
		return nil, err
	}
	if opts.Ref != "" {
		bundle.SetRef(result.Manifest, opts.Ref)
	}
	if err := bundle.Close(); err != nil {
		return nil, err
	}
	return result, nil
}

// UnpackOptions control Unpack.
type UnpackOptions struct {
	// Child unpacks only the fork child of this name (and what it needs).
	Child string
	// Ref names the ref to create for the unpacked commit. Empty means the
	// ref the bundle was packed from, or for a child refs/forks/ROOT/CHILD,
	// where ROOT is that ref's short name without heads/ or forks/, as
	// spore fork names children.
	Ref string
	// Progress, when set, receives progress events.
	Progress func(Progress)
}

// Unpack imports a bundle that Pack wrote: the packed commit and all its
// fork children, or with opts.Child only that child. Objects are verified
// like a pull's, and every ref is created in one atomic update at the end.
func Unpack(ctx context.Context, store *objects.Store, r *refs.Refs, path string, opts UnpackOptions) (*PullResult, error) {
	bundle, err := OpenBundle(path)
	if err != nil {
		return nil, err
	}
	defer bundle.Close()

	root, err := bundle.Root()
	if err != nil {
		return nil, err
	}
	rootRef := root.Annotations[AnnotationRef]
	forkPrefix := ""
	if rootRef != "" {
		forkPrefix = refs.ForkNamespace(rootRef, objects.ZeroID)
	}

	pull := PullOptions{Progress: opts.Progress, Ref: opts.Ref}
	if opts.Child != "" {
		pull.Child = opts.Child
		if pull.Ref == "" && forkPrefix != "" {
			pull.Ref = forkPrefix + opts.Child
		}
	} else {
		pull.Children = true
		pull.ChildRefPrefix = forkPrefix
		if pull.Ref == "" {
			pull.Ref = rootRef
		}
	}

	result, err := Pull(ctx, store, r, bundle, root.Digest.String(), pull)
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", path, err)
	}
	return result, nil
}
