// Package guestinit is PID 1 of a spore guest, as a library: early mounts,
// the loopback interface, an optional switch into a root disk, discovery
// of the agent's virtio-console port, fork identity (generation) handling
// and power-off. The main package in guest-init/cmd/init wires these steps
// together; the agent protocol itself is in guest-init/agent.
//
// Every step that needs root or a guest kernel is a small function, so the
// parts that can run unprivileged are tested on the development host.
package guestinit
