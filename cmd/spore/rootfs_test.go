package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spore-vm/spore/testsuite/images"
	"github.com/spore-vm/spore/vm/rootfs"
)

func TestRootfsBuildLsPrune(t *testing.T) {
	if _, err := exec.LookPath("mke2fs"); err != nil {
		if _, err := os.Stat("/usr/sbin/mke2fs"); err != nil {
			t.Skip("mke2fs not found: install e2fsprogs")
		}
	}
	img, err := images.Busybox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	desc, err := img.WriteLayout(context.Background(), layout, "v1")
	if err != nil {
		t.Fatal(err)
	}
	store := storeDir(t)
	cache := t.TempDir()
	output := filepath.Join(t.TempDir(), "rootfs.ext4")
	ref := "oci-layout:" + layout + ":v1"

	var built rootfs.Image
	res := spore(t, store, "--json", "rootfs", "--cache-dir", cache, "build", ref, "--output", output).mustSucceed(t)
	if err := json.Unmarshal([]byte(res.stdout), &built); err != nil {
		t.Fatalf("build --json printed %q: %v", res.stdout, err)
	}
	if built.Cached || built.ManifestDigest != desc.Digest.String() {
		t.Errorf("build: Cached=%v ManifestDigest=%s, want a new build of %s", built.Cached, built.ManifestDigest, desc.Digest)
	}
	if info, err := os.Stat(output); err != nil || info.Size() != built.Size {
		t.Errorf("--output file: %v, want %d bytes", err, built.Size)
	}

	res = spore(t, store, "rootfs", "--cache-dir", cache, "build", ref).mustSucceed(t)
	if !strings.Contains(res.stdout, ", cached)") || !strings.Contains(res.stdout, desc.Digest.String()) {
		t.Errorf("second build printed %q, want the digest and (cached)", res.stdout)
	}

	var entries []rootfs.CacheEntry
	res = spore(t, store, "--json", "rootfs", "--cache-dir", cache, "ls").mustSucceed(t)
	if err := json.Unmarshal([]byte(res.stdout), &entries); err != nil {
		t.Fatalf("ls --json printed %q: %v", res.stdout, err)
	}
	if len(entries) != 1 || entries[0].ManifestDigest != desc.Digest.String() || entries[0].Reference != ref {
		t.Errorf("ls = %+v, want the one busybox image", entries)
	}

	res = spore(t, store, "rootfs", "--cache-dir", cache, "prune", "--all", "--dry-run").mustSucceed(t)
	if !strings.Contains(res.stdout, "would remove 1 images") {
		t.Errorf("prune --dry-run printed %q", res.stdout)
	}
	if _, err := os.Stat(built.Path); err != nil {
		t.Errorf("prune --dry-run removed the image: %v", err)
	}
	spore(t, store, "rootfs", "--cache-dir", cache, "prune", "--all").mustSucceed(t)
	if _, err := os.Stat(built.Path); !os.IsNotExist(err) {
		t.Errorf("the image is still at %s after prune --all (err %v)", built.Path, err)
	}
	res = spore(t, store, "--json", "rootfs", "--cache-dir", cache, "ls").mustSucceed(t)
	if strings.TrimSpace(res.stdout) != "[]" {
		t.Errorf("ls after prune printed %q, want []", res.stdout)
	}
}

func TestRootfsBuildErrors(t *testing.T) {
	store := storeDir(t)
	cache := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"build", "oci-layout:" + filepath.Join(t.TempDir(), "missing")}, "open OCI layout"},
		{[]string{"build", "not a reference"}, "is not a registry reference"},
		{[]string{"build", "--platform", "arm64", "oci-layout:" + t.TempDir()}, `invalid platform "arm64" (write OS/ARCH[/VARIANT]`},
	}
	for _, tc := range cases {
		res := spore(t, store, append([]string{"rootfs", "--cache-dir", cache}, tc.args...)...)
		if res.code != ExitFailure || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("spore rootfs %v: exit %d, stderr %q; want exit %d and %q", tc.args, res.code, res.stderr, ExitFailure, tc.want)
		}
	}
}
