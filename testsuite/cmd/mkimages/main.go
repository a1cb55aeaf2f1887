// Command mkimages writes the test images of package testsuite/images as
// OCI image layouts, for end-to-end tests that run where the images cannot
// be built, such as inside the arm64 testbed: DIR/debian holds the Debian
// minbase image under the tag "test".
//
// Usage: mkimages -o DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spore-vm/spore/testsuite/images"
)

func main() {
	out := flag.String("o", "", "output directory")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkimages: -o DIR is required")
		os.Exit(2)
	}
	if err := run(context.Background(), *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkimages:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string) error {
	img, err := images.Debian(ctx)
	if err != nil {
		return err
	}

	// Write to a temporary directory and rename it into place, so an
	// interrupted run leaves no half-written layout for make to trust.
	dir := filepath.Join(out, "debian")
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	desc, err := img.WriteLayout(ctx, tmp, "test")
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	fmt.Printf("mkimages: wrote %s (manifest %s)\n", dir, desc.Digest)
	return nil
}
