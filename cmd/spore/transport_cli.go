package main

// TransportCommands are the commands that move commits between stores:
// through OCI registries and through bundle files.
type TransportCommands struct {
	Push   PushCmd   `cmd:"" help:"Upload a commit, and with --children its fork children, to an OCI registry."`
	Pull   PullCmd   `cmd:"" help:"Download a commit, or one fork child, from an OCI registry into the store."`
	Pack   PackCmd   `cmd:"" help:"Write a commit, and with --children its fork children, to an OCI image layout tar."`
	Unpack UnpackCmd `cmd:"" help:"Import a bundle that spore pack wrote into the store."`
}
