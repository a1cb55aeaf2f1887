package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spore-vm/spore/vm/rootfs"
)

// RootfsLsCmd lists the images in the rootfs cache.
type RootfsLsCmd struct{}

func (c *RootfsLsCmd) Run(g *Globals, parent *RootfsCmd) error {
	entries, err := rootfs.List(parent.CacheDir)
	if err != nil {
		return err
	}
	if g.JSON {
		if entries == nil {
			entries = []rootfs.CacheEntry{}
		}
		return writeJSON(os.Stdout, entries)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MANIFEST\tPLATFORM\tSIZE\tLAST USED\tREFERENCE")
	for _, e := range entries {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", shortDigest(e.ManifestDigest), e.Platform, formatBytes(e.Size), e.LastUsed.Format(time.DateTime), e.Reference)
	}
	return w.Flush()
}

// RootfsPruneCmd removes images from the rootfs cache.
type RootfsPruneCmd struct {
	All       bool          `help:"Remove every image."`
	UnusedFor time.Duration `name:"unused-for" placeholder:"DURATION" help:"Remove images that no build returned for this long, such as 168h."`
	DryRun    bool          `name:"dry-run" short:"n" help:"Print what would be removed and remove nothing."`
}

func (c *RootfsPruneCmd) Run(g *Globals, parent *RootfsCmd) error {
	result, err := rootfs.Prune(parent.CacheDir, rootfs.PruneOptions{All: c.All, UnusedFor: c.UnusedFor, DryRun: c.DryRun})
	if err != nil {
		return err
	}
	if g.JSON {
		if result.Removed == nil {
			result.Removed = []rootfs.CacheEntry{}
		}
		return writeJSON(os.Stdout, result)
	}
	verb := "removed"
	if c.DryRun {
		verb = "would remove"
	}
	for _, e := range result.Removed {
		fmt.Printf("%s %s %s %s\n", verb, shortDigest(e.ManifestDigest), e.Platform, e.Reference)
	}
	fmt.Printf("%s %d images, %s on disk\n", verb, len(result.Removed), formatBytes(result.FreedBytes))
	return nil
}

// shortDigest returns "sha256:" and the first 12 hex digits of a digest.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

// formatBytes prints a byte count in binary units, such as 370.0 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value, suffix := float64(n)/unit, "KiB"
	for _, next := range []string{"MiB", "GiB", "TiB"} {
		if value < unit {
			break
		}
		value, suffix = value/unit, next
	}
	return fmt.Sprintf("%.1f %s", value, suffix)
}
