package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/spore-vm/spore/testsuite/registry"
)

// TestPushPullResume captures a warmed guest and a child of it, pushes
// both to a registry on loopback, pulls the child by digest into an empty
// store, and resumes it there.
func TestPushPullResume(t *testing.T) {
	sporeBinary(t)
	useTestbedRegistry(t)
	reg := registry.Start(t)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	store := t.TempDir()

	r := spore(t, "", "--store", store, "run", "--memory", "256M", "--capture", "base", "--", "/bin/sh", "-c", "echo warm > /tmp/warm")
	if r.code != 0 {
		t.Fatalf("capture base: status %d\nstderr:\n%s", r.code, r.stderr)
	}
	r = spore(t, "", "--store", store, "run", "--from", "base", "--capture", "child", "--", "/bin/sh", "-c", "echo child >> /tmp/warm")
	if r.code != 0 {
		t.Fatalf("capture child: status %d\nstderr:\n%s", r.code, r.stderr)
	}

	repo := reg.Reference("spores/e2e")
	r = spore(t, "", "--store", store, "--json", "push", "base", repo+":base")
	if r.code != 0 {
		t.Fatalf("push base: status %d\nstderr:\n%s", r.code, r.stderr)
	}
	var base pushSummary
	decodeJSON(t, r.stdout, &base)

	r = spore(t, "", "--store", store, "--json", "push", "child", repo+":child")
	if r.code != 0 {
		t.Fatalf("push child: status %d\nstderr:\n%s", r.code, r.stderr)
	}
	var child pushSummary
	decodeJSON(t, r.stdout, &child)
	t.Logf("base push: %d bytes, %d blobs; child push: %d bytes, %d blobs sent, %d skipped",
		base.Total.Bytes, base.Total.Blobs, child.Total.Bytes, child.Total.Blobs, child.Total.BlobsSkipped)
	if child.Total.BlobsSkipped == 0 || child.Total.LayerBytes >= base.Total.LayerBytes {
		t.Errorf("child push sent %d layer bytes and skipped %d blobs; want fewer bytes than the base's %d and the base's layers skipped",
			child.Total.LayerBytes, child.Total.BlobsSkipped, base.Total.LayerBytes)
	}

	empty := t.TempDir()
	r = spore(t, "", "--store", empty, "pull", repo+"@"+child.Manifest, "--ref", "resumed")
	if r.code != 0 {
		t.Fatalf("pull child by digest: status %d\nstderr:\n%s", r.code, r.stderr)
	}
	r = spore(t, "", "--store", empty, "run", "--from", "resumed", "--", "cat", "/tmp/warm")
	if r.code != 0 || r.stdout != "warm\nchild\n" {
		t.Fatalf("resume of the pulled child: status %d, stdout %q, want %q\nstderr:\n%s", r.code, r.stdout, "warm\nchild\n", r.stderr)
	}
}

// pushSummary is the part of spore push --json that these tests read.
type pushSummary struct {
	Manifest string `json:"manifest"`
	Total    struct {
		Bytes        int64 `json:"bytes"`
		Blobs        int   `json:"blobs"`
		BlobsSkipped int   `json:"blobs_skipped"`
		LayerBytes   int64 `json:"layer_bytes"`
	} `json:"total"`
}

func decodeJSON(t *testing.T, text string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(strings.TrimSpace(text)), v); err != nil {
		t.Fatalf("decode JSON: %v\n%s", err, text)
	}
}

// useTestbedRegistry points the registry helper at the arm64
// docker-registry that make e2e unpacks for the testbed, when it is set.
// The testbed has no C library in /lib, so the registry starts through
// the ld.so unpacked beside it.
func useTestbedRegistry(t *testing.T) {
	t.Helper()
	for from, to := range map[string]string{
		"SPORE_TEST_REGISTRY":              registry.EnvBinary,
		"SPORE_TEST_REGISTRY_LOADER":       registry.EnvLoader,
		"SPORE_TEST_REGISTRY_LIBRARY_PATH": registry.EnvLibraryPath,
	} {
		if value := os.Getenv(from); value != "" {
			t.Setenv(to, value)
		}
	}
}
