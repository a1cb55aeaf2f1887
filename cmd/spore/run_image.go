package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/vm/guest"
	"github.com/spore-vm/spore/vm/rootfs"
)

// applyImage builds (or finds in the cache) the ext4 root file system of
// --image and makes it the guest's writable root disk. The image config's
// Env comes before the --env flags, so a flag overrides an image variable,
// and its WorkingDir applies unless --workdir is given. Entrypoint, Cmd and
// User are not applied: the command line names the command exactly, and
// sessions run as root.
func (c *RunCmd) applyImage(ctx context.Context, opts *guest.Options, req *agent.Request) (*rootfs.Image, error) {
	img, err := rootfs.Build(ctx, c.Image, rootfs.BuildOptions{Logger: slog.Default()})
	if err != nil {
		return nil, fmt.Errorf("build the root file system of --image %s: %w", c.Image, err)
	}
	slog.Debug("image root file system ready", "image", c.Image, "manifest", img.ManifestDigest,
		"path", img.Path, "cached", img.Cached)

	// The cache file is shared and must not change: the guest writes to
	// the copy-on-write overlay of the store disk, never to the file.
	opts.RootFS = img.Path
	opts.RootFSWritable = true

	req.Env = append(append([]string(nil), img.Config.Env...), req.Env...)
	if req.Dir == "" {
		req.Dir = img.Config.WorkingDir
	}
	return img, nil
}

// checkImageFlags rejects flags that --image replaces.
func (c *RunCmd) checkImageFlags() error {
	if c.Image == "" {
		return nil
	}
	switch {
	case c.RootFS != "":
		return errors.New("--image and --rootfs both set the root disk: give one of them")
	case c.From != "":
		return errors.New("--image cannot be combined with --from: a resumed guest runs on the disk saved in its commit")
	}
	return nil
}
