package main

import (
	"context"
	"fmt"
	"os"

	"github.com/opencontainers/go-digest"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/transport"
)

// PullCmd downloads a commit from a registry repository.
type PullCmd struct {
	Source    string `arg:"" help:"Registry repository with a tag or digest: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST."`
	Child     string `help:"Pull only the fork child of this name (as spore push --children named it) and what it needs." placeholder:"NAME"`
	Children  bool   `help:"Also pull every fork child of the commit, as refs/forks/TAG/NAME (needs a tag)."`
	Ref       string `help:"Ref to create for the pulled commit (a name without refs/ is a branch). Default: refs/tags/TAG, or refs/forks/TAG/NAME with --child; none for a digest." placeholder:"NAME"`
	PlainHTTP bool   `help:"Talk plain HTTP to the registry (loopback registries use it without this flag)."`
}

func (c *PullCmd) Run(g *Globals) error {
	ref, err := transport.ParseReference(c.Source)
	if err != nil {
		return withExitCode(ExitUsage, err)
	}
	if ref.Reference == "" {
		return withExitCode(ExitUsage, fmt.Errorf("%q names no tag or digest (write REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST)", c.Source))
	}

	if c.Children && (c.Child != "" || ref.ValidateReferenceAsDigest() == nil) {
		return withExitCode(ExitUsage, fmt.Errorf("--children needs a tag and no --child (write REGISTRY/REPO:TAG)"))
	}

	refName := ""
	switch {
	case c.Ref != "":
		refName, err = pullRefName(c.Ref)
		if err != nil {
			return err
		}
	case ref.ValidateReferenceAsDigest() == nil:
	case c.Child != "":
		refName = refs.ForksPrefix + ref.Reference + "/" + c.Child
	default:
		refName = refs.TagsPrefix + ref.Reference
	}
	if refName != "" {
		if err := refs.ValidateName(refName); err != nil {
			return withExitCode(ExitUsage, fmt.Errorf("%w (choose a ref with --ref)", err))
		}
	}

	s, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	repo, err := transport.OpenRepository(c.Source, transport.RemoteOptions{PlainHTTP: c.PlainHTTP})
	if err != nil {
		return withExitCode(ExitUsage, err)
	}

	progress := newProgressPrinter(g)
	opts := transport.PullOptions{Child: c.Child, Ref: refName, Progress: progress.report}
	if c.Children {
		opts.Children = true
		opts.ChildRefPrefix = refs.ForksPrefix + ref.Reference + "/"
	}
	result, err := transport.Pull(context.Background(), s, r, repo, ref.Reference, opts)
	progress.finish()
	if err != nil {
		return transportError(fmt.Errorf("pull from %s/%s: %w", ref.Registry, ref.Repository, err))
	}
	return printPull(g, result)
}

// printPull prints the summary of a pull or an unpack.
func printPull(g *Globals, result *transport.PullResult) error {
	if g.JSON {
		return writeJSON(os.Stdout, result)
	}
	printPulled(result, result.Manifest)
	for _, child := range result.Children {
		printPulled(child, child.Manifest)
	}
	fmt.Printf("%d blobs fetched (%s), %d skipped, %d objects verified\n", result.Blobs, formatBytes(result.Bytes), result.BlobsSkipped, result.Objects)
	return nil
}

func printPulled(result *transport.PullResult, manifest digest.Digest) {
	label := "commit"
	if result.Child != "" {
		label = "child " + result.Child
	}
	if result.Ref != "" {
		fmt.Printf("pulled %s %s (manifest %s) as %s\n", label, result.Commit, manifest, result.Ref)
		return
	}
	fmt.Printf("pulled %s %s (manifest %s)\n", label, result.Commit, manifest)
}
