package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// layerFiles returns the entries of a layer tar by name.
func layerFiles(t *testing.T, layer []byte) map[string]*tar.Header {
	t.Helper()
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		if err != nil {
			t.Fatalf("read layer: %v", err)
		}
		entries[strings.TrimSuffix(hdr.Name, "/")] = hdr
	}
}

func TestBusyboxImage(t *testing.T) {
	img, err := Busybox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	entries := layerFiles(t, img.Layers[0])
	if hdr := entries["bin/busybox"]; hdr == nil || hdr.Size < 100000 {
		t.Fatalf("bin/busybox missing or small: %+v", hdr)
	}
	if hdr := entries["bin/sh"]; hdr == nil || hdr.Linkname != "busybox" {
		t.Errorf("bin/sh is not a symlink to busybox: %+v", hdr)
	}

	first, err := img.ManifestDigest()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Busybox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	second, err := again.ManifestDigest()
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Errorf("two builds of the busybox image have manifests %s and %s", first, second)
	}
}

func TestDebianImage(t *testing.T) {
	if testing.Short() {
		t.Skip("debootstrap downloads about 40 MB from the Debian mirror on its first run")
	}
	img, err := Debian(context.Background())
	if errors.Is(err, ErrNeedsRoot) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	entries := layerFiles(t, img.Layers[0])
	for _, name := range []string{"etc/os-release", "usr/lib/os-release", "bin", "usr/bin/dpkg", "etc/debian_version"} {
		if entries[name] == nil {
			t.Errorf("the Debian layer has no %s", name)
		}
	}
	if len(entries) < 1000 {
		t.Errorf("the Debian layer has %d entries, expected a minbase tree of thousands", len(entries))
	}
}
