package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spore-vm/spore/vm"
)

// Version is the spore release, set at build time with
// -ldflags "-X main.Version=...". Builds without it report the module
// version or "devel".
var Version = "devel"

// VersionCmd prints build information and the result of the KVM probe.
type VersionCmd struct{}

// versionInfo is the --json form of `spore version`.
type versionInfo struct {
	Version   string       `json:"version"`
	GoVersion string       `json:"go_version"`
	OS        string       `json:"os"`
	Arch      string       `json:"arch"`
	KVM       vm.HostProbe `json:"kvm"`
}

func (c *VersionCmd) Run(g *Globals) error {
	info := versionInfo{
		Version:   buildVersion(),
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		KVM:       vm.ProbeHost(),
	}
	if g.JSON {
		return writeJSON(os.Stdout, info)
	}

	fmt.Printf("spore %s (%s, %s/%s)\n", info.Version, info.GoVersion, info.OS, info.Arch)
	if info.KVM.Usable {
		fmt.Printf("kvm: usable for %s guests (%s, API version %d)\n", info.KVM.GuestArch, info.KVM.Device, info.KVM.APIVersion)
	} else {
		fmt.Printf("kvm: not usable for %s guests: %s\n", info.KVM.GuestArch, info.KVM.Reason)
	}
	return nil
}

// buildVersion returns Version, or the main module version recorded by the
// Go toolchain when Version was not set at link time.
func buildVersion() string {
	if Version != "devel" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}
