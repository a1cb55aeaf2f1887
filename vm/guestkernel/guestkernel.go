// Package guestkernel pins spore's default guest kernel, the gokrazy arm64
// kernel, as a module dependency. The module ships the kernel Image as the
// file vmlinuz; `make install` copies it next to the spore binary.
package guestkernel

// The blank import keeps the kernel module in go.mod, so the build that
// installs it and every developer use the same pinned version.
import _ "github.com/gokrazy/kernel.arm64"

// Module is the Go module that ships the default guest kernel.
const Module = "github.com/gokrazy/kernel.arm64"

// ImageName is the file name of the kernel Image inside Module.
const ImageName = "vmlinuz"
