// Command mkimage writes a test image from package testsuite/images to an
// OCI image layout. Tests that cannot build the image themselves, such as
// those in the arm64 testbed, read that layout.
//
// Usage: mkimage -image busybox|debian -o DIR [-tag TAG]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/spore-vm/spore/testsuite/images"
)

func main() {
	name := flag.String("image", "busybox", "image to write: busybox or debian")
	dir := flag.String("o", "", "OCI image layout directory to write")
	tag := flag.String("tag", "test", "tag of the image in the layout")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "mkimage: -o DIR is required")
		os.Exit(2)
	}

	var img *images.Image
	var err error
	switch *name {
	case "busybox":
		img, err = images.Busybox(context.Background())
	case "debian":
		img, err = images.Debian(context.Background())
	default:
		fmt.Fprintf(os.Stderr, "mkimage: unknown image %q (use busybox or debian)\n", *name)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
	desc, err := img.WriteLayout(context.Background(), *dir, *tag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s:%s\n", desc.Digest, *dir, *tag)
}
