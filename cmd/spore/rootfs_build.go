package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spore-vm/spore/vm/rootfs"
)

// RootfsBuildCmd builds the ext4 root file system of an OCI image.
type RootfsBuildCmd struct {
	Image     string `arg:"" help:"Image to build: REGISTRY/REPO[:TAG|@DIGEST], or oci-layout:PATH[:TAG|@DIGEST] for a local OCI image layout."`
	Platform  string `default:"linux/arm64" help:"Platform to pick from an image index, as OS/ARCH[/VARIANT]."`
	Output    string `short:"o" type:"path" placeholder:"FILE" help:"Also copy the ext4 image to this file."`
	PlainHTTP bool   `name:"plain-http" help:"Talk HTTP instead of HTTPS to the registry. Loopback registries use HTTP without it."`
}

func (c *RootfsBuildCmd) Run(g *Globals, parent *RootfsCmd) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	img, err := rootfs.Build(ctx, c.Image, rootfs.BuildOptions{
		Platform:  c.Platform,
		CacheDir:  parent.CacheDir,
		PlainHTTP: c.PlainHTTP,
		Logger:    slog.Default(),
		Output:    c.Output,
	})
	if err != nil {
		return err
	}
	if g.JSON {
		return writeJSON(os.Stdout, img)
	}
	source := "built"
	if img.Cached {
		source = "cached"
	}
	fmt.Printf("%s %s %s (%s, %s)\n", img.ManifestDigest, img.Platform, img.Path, formatBytes(img.Size), source)
	if c.Output != "" {
		fmt.Printf("copied to %s\n", c.Output)
	}
	return nil
}
