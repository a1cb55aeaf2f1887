package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/spore-vm/spore/testsuite/registry"
	"github.com/spore-vm/spore/transport"
)

// imageSummary is the part of spore run's --json summary about --image.
type imageSummary struct {
	Image *struct {
		Path           string `json:"path"`
		ManifestDigest string `json:"manifest_digest"`
		Cached         bool   `json:"cached"`
	} `json:"image"`
	Import *struct {
		Cached bool `json:"cached"`
	} `json:"root_disk_import"`
}

// TestImageRunDebian runs commands in the Debian test image, pulled from a
// registry on loopback. The first run builds the root file system, and the
// second finds it in the cache without fetching a layer. The image's Env
// and WorkingDir apply, and --env and --workdir override them.
func TestImageRunDebian(t *testing.T) {
	sporeBinary(t)
	imagesDir := os.Getenv(testImagesEnv)
	if imagesDir == "" {
		t.Fatalf("%s is not set: run these tests with make e2e", testImagesEnv)
	}
	useTestbedRegistry(t)
	reg := registry.Start(t)
	ref := reg.Reference("debian:test")
	layers := pushLayout(t, filepath.Join(imagesDir, "debian"), ref)

	env := []string{"XDG_CACHE_HOME=" + t.TempDir()}
	store := t.TempDir()

	// First run: the layers are fetched and the ext4 image is built.
	r := sporeWithEnv(t, env, "--store", store, "--json", "run", "--image", ref, "--", "cat", "/etc/os-release")
	if r.code != 0 {
		t.Fatalf("first run: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"ID=debian", "VERSION_CODENAME=bookworm"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("first run: /etc/os-release lacks %q:\n%s", want, r.stdout)
		}
	}
	first := parseImageSummary(t, r.stderr)
	if first.Image == nil || first.Image.Cached {
		t.Fatalf("first run: want a fresh build, got %+v", first.Image)
	}
	if first.Import == nil || first.Import.Cached {
		t.Fatalf("first run: want a first import into the store, got %+v", first.Import)
	}
	built, err := os.Stat(first.Image.Path)
	if err != nil {
		t.Fatal(err)
	}
	fetched := layerFetches(reg.Log(), layers)
	if fetched == 0 {
		t.Fatalf("the registry log shows no layer fetch for the first run:\n%s", reg.Log())
	}

	// Second run: a shell string, the cache serves the root file system.
	r = sporeWithEnv(t, env, "--store", store, "--json", "run", "--image", ref, `echo "image=$SPORE_IMAGE"; pwd`)
	if r.code != 0 {
		t.Fatalf("second run: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if want := "image=debian-test\n/root\n"; r.stdout != want {
		t.Errorf("second run printed %q, want %q (the image's Env and WorkingDir)", r.stdout, want)
	}
	second := parseImageSummary(t, r.stderr)
	if second.Image == nil || !second.Image.Cached || second.Image.Path != first.Image.Path {
		t.Errorf("second run: want the cached build at %s, got %+v", first.Image.Path, second.Image)
	}
	if second.Import == nil || !second.Import.Cached {
		t.Errorf("second run: want the store's earlier import, got %+v", second.Import)
	}
	if after := layerFetches(reg.Log(), layers); after != fetched {
		t.Errorf("second run fetched layers: %d layer requests before it, %d after", fetched, after)
	}
	again, err := os.Stat(first.Image.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !again.ModTime().Equal(built.ModTime()) {
		t.Errorf("second run rewrote the ext4 image %s", first.Image.Path)
	}

	// A --env flag overrides a variable of the image, --workdir its
	// WorkingDir.
	r = sporeWithEnv(t, env, "--store", store, "run", "--image", ref, "-e", "SPORE_IMAGE=flag", "-w", "/tmp",
		"--", "/bin/sh", "-c", `echo "image=$SPORE_IMAGE"; pwd`)
	if want := "image=flag\n/tmp\n"; r.code != 0 || r.stdout != want {
		t.Errorf("run with -e and -w: status %d, printed %q, want %q\nstderr:\n%s", r.code, r.stdout, want, r.stderr)
	}
}

func parseImageSummary(t *testing.T, stderr string) imageSummary {
	t.Helper()
	start := strings.Index(stderr, "{\n")
	if start < 0 {
		t.Fatalf("no JSON summary on stderr:\n%s", stderr)
	}
	var s imageSummary
	if err := json.Unmarshal([]byte(stderr[start:]), &s); err != nil {
		t.Fatalf("decode summary: %v\n%s", err, stderr[start:])
	}
	return s
}

// pushLayout copies the image tagged "test" in the OCI layout dir to ref
// and returns the digests of its layers.
func pushLayout(t *testing.T, dir, ref string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, err := oci.NewFromFS(ctx, os.DirFS(dir))
	if err != nil {
		t.Fatalf("open the OCI layout %s: %v", dir, err)
	}
	dst, err := transport.OpenRepository(ref, transport.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := oras.Copy(ctx, src, "test", dst, "test", oras.DefaultCopyOptions)
	if err != nil {
		t.Fatalf("push %s to %s: %v", dir, ref, err)
	}

	raw, err := content.FetchAll(ctx, src, desc)
	if err != nil {
		t.Fatal(err)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatalf("decode the manifest of %s: %v", dir, err)
	}
	var layers []string
	for _, l := range manifest.Layers {
		layers = append(layers, l.Digest.String())
	}
	if len(layers) == 0 {
		t.Fatalf("the image in %s has no layers", dir)
	}
	return layers
}

// layerFetches counts the GET requests for the layer blobs in a registry
// log.
func layerFetches(log string, layers []string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "GET") {
			continue
		}
		for _, digest := range layers {
			if strings.Contains(line, "/blobs/"+digest) {
				n++
			}
		}
	}
	return n
}

// sporeWithEnv runs spore with extra environment variables and a time
// limit for an image build in the emulated testbed.
func sporeWithEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runSpore(t, invocation{env: env, timeout: 15 * time.Minute}, args...)
}
