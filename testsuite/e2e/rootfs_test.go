package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testImagesEnv names the directory of test image layouts that make e2e
// writes; its busybox subdirectory holds the busybox image, tagged "test".
const testImagesEnv = "SPORE_TEST_IMAGES"

// TestRootfsBuildAndBoot builds the busybox test image with spore rootfs
// build on the arm64 host and boots the result as a guest's root file
// system: owners, modes and files from the image layer must reach the
// guest.
func TestRootfsBuildAndBoot(t *testing.T) {
	sporeBinary(t)
	imagesDir := os.Getenv(testImagesEnv)
	if imagesDir == "" {
		t.Fatalf("%s is not set: run these tests with make e2e", testImagesEnv)
	}
	layout := filepath.Join(imagesDir, "busybox")
	cache := t.TempDir()
	output := filepath.Join(t.TempDir(), "busybox.ext4")
	ref := "oci-layout:" + layout + ":test"

	r := spore(t, "", "--json", "rootfs", "--cache-dir", cache, "build", ref, "--output", output)
	if r.code != 0 {
		t.Fatalf("spore rootfs build: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	var built struct {
		ManifestDigest string `json:"manifest_digest"`
		Cached         bool   `json:"cached"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &built); err != nil {
		t.Fatalf("rootfs build --json printed %q: %v", r.stdout, err)
	}
	if built.Cached || !strings.HasPrefix(built.ManifestDigest, "sha256:") {
		t.Errorf("first build = %+v, want a new build with a sha256 manifest digest", built)
	}

	r = spore(t, "", "--json", "rootfs", "--cache-dir", cache, "build", ref)
	if r.code != 0 || !strings.Contains(r.stdout, `"cached": true`) {
		t.Errorf("second build: exit %d, stdout %q; want a cached build", r.code, r.stdout)
	}

	r = spore(t, "", "run", "--rootfs", output, "--", "/bin/sh", "-c",
		"cat /etc/group; stat -c '%u:%g %a %n' /home/user /home/user/notes /usr/bin/suid /tmp")
	if r.code != 0 {
		t.Fatalf("spore run --rootfs: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"user:x:1000:",
		"1000:1000 750 /home/user",
		"1000:1000 600 /home/user/notes",
		"0:0 4755 /usr/bin/suid",
		"0:0 1777 /tmp",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("guest output lacks %q:\n%s", want, r.stdout)
		}
	}
}
