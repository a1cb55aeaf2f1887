package main

// RootfsCommands are the commands that build and manage root file systems
// from OCI images.
type RootfsCommands struct{}
