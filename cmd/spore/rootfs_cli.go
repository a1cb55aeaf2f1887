package main

// RootfsCommands are the commands that build and manage root file systems
// from OCI images.
type RootfsCommands struct {
	Rootfs RootfsCmd `cmd:"" help:"Build ext4 root file systems from arm64 OCI images and manage their cache."`
}

// RootfsCmd groups the rootfs subcommands and their shared cache flag.
type RootfsCmd struct {
	CacheDir string `name:"cache-dir" help:"Cache of built images (default $XDG_CACHE_HOME/spore/rootfs, or ~/.cache/spore/rootfs)." env:"SPORE_ROOTFS_CACHE" placeholder:"DIR"`

	Build RootfsBuildCmd `cmd:"" help:"Build the ext4 root file system of an OCI image, or take it from the cache."`
	Ls    RootfsLsCmd    `cmd:"" name:"ls" help:"List the images in the cache."`
	Prune RootfsPruneCmd `cmd:"" help:"Remove images from the cache."`
}
