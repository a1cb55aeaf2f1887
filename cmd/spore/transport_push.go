package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/transport"
)

// PushCmd uploads a commit to a registry repository.
type PushCmd struct {
	Revision    string `arg:"" help:"Ref or commit ID to push."`
	Destination string `arg:"" help:"Registry repository and optional tag: REGISTRY/REPO[:TAG]."`
	Children    bool   `help:"Also push every fork child under refs/forks/NAME/, where NAME is the pushed ref's short name."`
	PlainHTTP   bool   `help:"Talk plain HTTP to the registry (loopback registries use it without this flag)."`
}

func (c *PushCmd) Run(g *Globals) error {
	ref, err := transport.ParseReference(c.Destination)
	if err != nil {
		return withExitCode(ExitUsage, err)
	}
	tag := ref.Reference
	if strings.Contains(tag, ":") {
		return withExitCode(ExitUsage, fmt.Errorf("push destination %q names a digest; name a tag or nothing (REGISTRY/REPO[:TAG])", c.Destination))
	}

	src, err := g.openExport(c.Revision, c.Children)
	if err != nil {
		return err
	}
	defer src.Close()
	id := src.commit

	repo, err := transport.OpenRepository(c.Destination, transport.RemoteOptions{PlainHTTP: c.PlainHTTP})
	if err != nil {
		return withExitCode(ExitUsage, err)
	}
	progress := newProgressPrinter(g)
	result, err := transport.Push(context.Background(), src.store, repo, id, transport.PushOptions{Tag: tag, Children: src.children, Progress: progress.report})
	progress.finish()
	if err != nil {
		return fmt.Errorf("push to %s: %w", ref.Registry, err)
	}

	if g.JSON {
		return writeJSON(os.Stdout, result)
	}
	name := ref.Registry + "/" + ref.Repository
	fmt.Printf("pushed %s as %s@%s\n", id.Short(), name, result.Manifest)
	if tag != "" {
		fmt.Printf("tagged %s:%s\n", name, tag)
	}
	for _, child := range result.Children {
		fmt.Printf("pushed child %s (%s) as %s@%s\n", child.Name, child.Commit.Short(), name, child.Manifest)
	}
	fmt.Printf("%d blobs sent (%s), %d skipped, %d manifests\n", result.Total.Blobs, formatBytes(result.Total.Bytes), result.Total.BlobsSkipped, result.Total.Manifests)
	return nil
}

// pullRefName turns the --ref value into a full ref name: names without
// refs/ are branches.
func pullRefName(name string) (string, error) {
	if !strings.HasPrefix(name, "refs/") {
		name = refs.HeadsPrefix + name
	}
	if err := refs.ValidateName(name); err != nil {
		return "", withExitCode(ExitUsage, err)
	}
	return name, nil
}

// transportError adds what to do next to errors about corrupt objects and
// returns other errors as they are.
func transportError(err error) error {
	if errors.Is(err, objects.ErrCorrupt) {
		return fmt.Errorf("%w (no ref was written; push the commit again from a good store)", err)
	}
	return err
}
