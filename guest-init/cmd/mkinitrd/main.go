// Command mkinitrd builds the guest init for the guest architecture and
// writes the initramfs archive that guest-init/initrd embeds:
//
//	go run ./guest-init/cmd/mkinitrd -o guest-init/initrd/assets/init.cpio
//
// The build is static (CGO_ENABLED=0), uses -trimpath and an empty build
// ID, and the archive has sorted entries with zero mtimes, so the same
// source tree and Go version give the same archive bytes.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spore-vm/spore/guest-init/initrd"
)

const initPackage = "github.com/spore-vm/spore/guest-init/cmd/init"

func main() {
	out := flag.String("o", "", "output path of the cpio archive (required)")
	arch := flag.String("arch", "arm64", "GOARCH of the guest")
	initPath := flag.String("init", "", "use this prebuilt static init binary instead of building "+initPackage)
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkinitrd -o FILE [-arch GOARCH] [-init BINARY]")
		os.Exit(2)
	}
	if err := run(*out, *arch, *initPath); err != nil {
		fmt.Fprintf(os.Stderr, "mkinitrd: %v\n", err)
		os.Exit(1)
	}
}

func run(out, arch, initPath string) error {
	tmpDir, err := os.MkdirTemp("", "mkinitrd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmpDir)

	// Build the init unless a binary was given.
	if initPath == "" {
		initPath = filepath.Join(tmpDir, "init")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", initPath, initPackage)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s for linux/%s: %w", initPackage, arch, err)
		}
	}
	bin, err := os.ReadFile(initPath)
	if err != nil {
		return err
	}
	archive, err := initrd.Build(bin)
	if err != nil {
		return err
	}

	// Write through a temporary file so a failed run leaves no half archive.
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, archive, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mkinitrd: wrote %s (%d bytes, init %d bytes, linux/%s)\n", out, len(archive), len(bin), arch)
	return nil
}
