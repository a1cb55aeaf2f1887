package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
)

// pushBlob uploads data with a monolithic POST then PUT and returns its
// sha256 hex digest.
func pushBlob(t *testing.T, r *Registry, repository string, data []byte) string {
	t.Helper()
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])

	resp, err := http.Post(r.URL()+"/v2/"+repository+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s", resp.Status)
	}
	location := resp.Header.Get("Location")
	if location[0] == '/' {
		location = r.URL() + location
	}

	req, err := http.NewRequest(http.MethodPut, location+"&digest=sha256:"+digest, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("finish upload: %s", resp.Status)
	}
	return digest
}

func getBlob(r *Registry, repository, digest string) ([]byte, error) {
	resp, err := http.Get(fmt.Sprintf("%s/v2/%s/blobs/sha256:%s", r.URL(), repository, digest))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET blob: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func TestRegistryStoresBlob(t *testing.T) {
	r := Start(t)
	data := []byte("spore registry helper test blob")
	digest := pushBlob(t, r, "test/blobs", data)

	got, err := getBlob(r, "test/blobs", digest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("blob = %q, want %q", got, data)
	}
	if _, err := os.Stat(r.BlobPath(digest)); err != nil {
		t.Errorf("blob file missing from storage: %v", err)
	}
	count, err := r.BlobCount()
	if err != nil {
		t.Fatal(err)
	}
	if count != 1 {
		t.Errorf("BlobCount = %d, want 1", count)
	}
}

func TestRegistryKillRestart(t *testing.T) {
	r := Start(t)
	digest := pushBlob(t, r, "test/restart", []byte("survives a crash"))
	host, pid := r.Host, r.PID()

	r.Kill()
	if r.PID() != 0 {
		t.Error("PID after Kill is not 0")
	}
	if _, err := getBlob(r, "test/restart", digest); err == nil {
		t.Fatal("killed registry still returns the blob")
	}

	r.Restart()
	if r.Host != host {
		t.Errorf("host after restart = %s, want %s", r.Host, host)
	}
	if r.PID() == pid || r.PID() == 0 {
		t.Errorf("PID after restart = %d, old PID %d", r.PID(), pid)
	}
	got, err := getBlob(r, "test/restart", digest)
	if err != nil {
		t.Fatalf("blob after restart: %v", err)
	}
	if string(got) != "survives a crash" {
		t.Errorf("blob after restart = %q", got)
	}
}

func TestRegistryStopEndsProcess(t *testing.T) {
	r := Start(t)
	pid := r.PID()
	r.Stop()
	if r.PID() != 0 {
		t.Error("PID after Stop is not 0")
	}
	if _, err := http.Get(r.URL() + "/v2/"); err == nil {
		t.Errorf("registry (PID %d) still accepts connections after Stop", pid)
	}
}
