package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spore-vm/spore/transport"
)

// PackCmd writes a commit to a bundle file.
type PackCmd struct {
	Revision string `arg:"" help:"Ref or commit ID to pack."`
	Out      string `required:"" short:"o" help:"Bundle file to write (an OCI image layout tar)." placeholder:"FILE"`
	Children bool   `help:"Also pack every fork child under refs/forks/NAME/, where NAME is the packed ref's short name."`
}

func (c *PackCmd) Run(g *Globals) error {
	src, err := g.openExport(c.Revision, c.Children)
	if err != nil {
		return err
	}
	defer src.Close()
	id := src.commit

	opts := transport.PackOptions{Children: src.children}
	if strings.HasPrefix(src.ref, "refs/") {
		opts.Ref = src.ref
	}

	progress := newProgressPrinter(g)
	opts.Progress = progress.report
	result, err := transport.Pack(context.Background(), src.store, c.Out, id, opts)
	progress.finish()
	if err != nil {
		return fmt.Errorf("pack %s: %w", c.Revision, err)
	}

	if g.JSON {
		return writeJSON(os.Stdout, result)
	}
	fmt.Printf("packed %s (manifest %s) and %d children into %s (%s)\n", id.Short(), result.Manifest, len(result.Children), c.Out, formatBytes(result.Total.Bytes))
	return nil
}

// UnpackCmd imports a bundle.
type UnpackCmd struct {
	File  string `arg:"" help:"Bundle file that spore pack wrote."`
	Child string `help:"Unpack only the fork child of this name and what it needs." placeholder:"NAME"`
	Ref   string `help:"Ref to create for the unpacked commit (a name without refs/ is a branch). Default: the ref it was packed from, or refs/forks/ROOT/NAME with --child." placeholder:"NAME"`
}

func (c *UnpackCmd) Run(g *Globals) error {
	opts := transport.UnpackOptions{Child: c.Child}
	if c.Ref != "" {
		name, err := pullRefName(c.Ref)
		if err != nil {
			return err
		}
		opts.Ref = name
	}

	s, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()

	progress := newProgressPrinter(g)
	opts.Progress = progress.report
	result, err := transport.Unpack(context.Background(), s, r, c.File, opts)
	progress.finish()
	if err != nil {
		return transportError(err)
	}
	return printPull(g, result)
}
