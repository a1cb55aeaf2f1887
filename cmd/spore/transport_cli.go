package main

// TransportCommands are the commands that move commits between stores:
// through OCI registries and through bundle files.
type TransportCommands struct{}
