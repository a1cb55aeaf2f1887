package transport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost:5000":   true,
		"127.0.0.1:5000":   true,
		"127.9.9.9":        true,
		"[::1]:5000":       true,
		"registry.example": false,
		"10.0.0.1:5000":    false,
		"localhost.evil":   false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestOpenRepository(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(config, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	repo, err := OpenRepository("127.0.0.1:5000/spores/base:v1", RemoteOptions{DockerConfig: config})
	if err != nil {
		t.Fatal(err)
	}
	if !repo.PlainHTTP || repo.Reference.Repository != "spores/base" || repo.Reference.Reference != "v1" {
		t.Errorf("repository = %+v, plain HTTP %v", repo.Reference, repo.PlainHTTP)
	}

	repo, err = OpenRepository("registry.example/spores/base", RemoteOptions{DockerConfig: config})
	if err != nil {
		t.Fatal(err)
	}
	if repo.PlainHTTP {
		t.Error("a remote registry uses plain HTTP without being asked")
	}

	_, err = OpenRepository("not a reference", RemoteOptions{DockerConfig: config})
	if err == nil || !strings.Contains(err.Error(), "REGISTRY/REPO") {
		t.Errorf("bad reference error = %v, want one that shows the form", err)
	}
}
