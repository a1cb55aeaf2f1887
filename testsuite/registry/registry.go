// Package registry starts a real OCI registry for tests: Debian's
// docker-registry (distribution 2.8) on 127.0.0.1 with a free port and
// filesystem storage in a temporary directory.
//
// The binary is $SPORE_REGISTRY or docker-registry on PATH; a test that
// finds neither is skipped with a message that names the package to install.
// The registry is stopped by PID when the test ends. Kill and Restart let a
// test crash the registry and bring it back on the same port and storage.
package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvBinary names the environment variable that points to a registry binary
// to use instead of docker-registry on PATH.
const EnvBinary = "SPORE_REGISTRY"

// EnvLoader names the environment variable that points to an ELF
// interpreter (a glibc ld.so) to start the registry binary with, and
// EnvLibraryPath the directory of the C library it loads. They let a
// dynamically linked registry, such as Debian's arm64 docker-registry, run
// where its C library is not installed, as in the arm64 testbed.
const (
	EnvLoader      = "SPORE_REGISTRY_LOADER"
	EnvLibraryPath = "SPORE_REGISTRY_LIBRARY_PATH"
)

// StartTimeout bounds how long Start and Restart wait for GET /v2/ to
// return 200. It is generous because the arm64 testbed emulates its CPU.
var StartTimeout = 60 * time.Second

// Registry is one running registry process and its storage.
type Registry struct {
	// Host is the registry's address as a reference uses it: 127.0.0.1:PORT.
	Host string
	// StorageDir is the filesystem storage root. Blobs live under
	// docker/registry/v2/blobs/sha256/<first two hex>/<hex>/data.
	StorageDir string

	t      testing.TB
	binary string
	config string
	log    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary returns the registry binary to run: $SPORE_REGISTRY if set,
// otherwise docker-registry from PATH.
func Binary() (string, error) {
	if path := os.Getenv(EnvBinary); path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, path, err)
		}
		return path, nil
	}
	path, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", errors.New("docker-registry not found on PATH and " + EnvBinary + " is not set (install it with apt-get install docker-registry, or set " + EnvBinary + " to a registry binary)")
	}
	return path, nil
}

// Start runs a registry for the test t and stops it when t ends. It skips t
// when no registry binary exists and fails t when the registry does not
// start.
func Start(t testing.TB) *Registry {
	t.Helper()
	binary, err := Binary()
	if err != nil {
		t.Skip(err)
	}

	dir := t.TempDir()
	r := &Registry{
		StorageDir: filepath.Join(dir, "storage"),
		t:          t,
		binary:     binary,
		config:     filepath.Join(dir, "config.yml"),
		log:        filepath.Join(dir, "registry.log"),
	}
	t.Cleanup(r.Stop)

	// Another process can take the free port between the probe and the
	// registry's bind, so a failed start retries on a new port.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("find a free port on 127.0.0.1: %v", err)
		}
		r.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := r.writeConfig(); err != nil {
			t.Fatal(err)
		}
		err = r.start()
		if err == nil {
			return r
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("registry did not start on %s, trying another port: %v", r.Host, err)
	}
}

// URL returns the registry's base URL, http://127.0.0.1:PORT.
func (r *Registry) URL() string {
	return "http://" + r.Host
}

// Reference returns HOST/repository, a repository reference in this
// registry.
func (r *Registry) Reference(repository string) string {
	return r.Host + "/" + repository
}

// PID returns the process ID of the running registry, or 0 when it is not
// running.
func (r *Registry) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Kill ends the registry with SIGKILL, as a crash would, and waits until it
// has exited. Its storage stays as the crash left it.
func (r *Registry) Kill() {
	r.t.Helper()
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd, r.done = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.t.Errorf("kill registry (PID %d): %v", cmd.Process.Pid, err)
	}
	<-done
}

// Restart starts the registry again on the same port and storage after
// Kill or Stop. It fails the test when the registry does not come up.
func (r *Registry) Restart() {
	r.t.Helper()
	r.Kill()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// Stop ends the registry with SIGTERM, then SIGKILL after five seconds,
// and waits until it has exited. Start registers Stop as a test cleanup.
func (r *Registry) Stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd, r.done = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Log returns what the registry has written to stdout and stderr so far.
func (r *Registry) Log() string {
	data, err := os.ReadFile(r.log)
	if err != nil {
		return fmt.Sprintf("(no registry log: %v)", err)
	}
	return string(data)
}

func (r *Registry) writeConfig() error {
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, r.StorageDir, r.Host)
	if err := os.WriteFile(r.config, []byte(config), 0o600); err != nil {
		return fmt.Errorf("write registry config: %w", err)
	}
	return nil
}

// start runs the process and waits until GET /v2/ returns 200.
func (r *Registry) start() error {
	logFile, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open registry log: %w", err)
	}
	defer logFile.Close()

	cmd := exec.Command(r.binary, "serve", r.config)
	if loader := os.Getenv(EnvLoader); loader != "" {
		args := []string{r.binary, "serve", r.config}
		if dir := os.Getenv(EnvLibraryPath); dir != "" {
			args = append([]string{"--library-path", dir}, args...)
		}
		cmd = exec.Command(loader, args...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	if err := r.waitReady(done); err != nil {
		r.Kill()
		return fmt.Errorf("registry %s (PID %d) on %s: %w\nregistry log:\n%s", r.binary, cmd.Process.Pid, r.Host, err, r.Log())
	}
	return nil
}

func (r *Registry) waitReady(exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(StartTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited before GET /v2/ returned 200")
		default:
		}

		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/ returned %s", resp.Status)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("GET /v2/ did not return 200 within %v: %v", StartTimeout, lastErr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// BlobPath returns the file in the registry's storage that contains the blob
// with the given sha256 hex digest.
func (r *Registry) BlobPath(hex string) string {
	return filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// BlobCount returns how many blobs the registry stores.
func (r *Registry) BlobCount() (int, error) {
	root := filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs", "sha256")
	count := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "data" {
			count++
		}
		return nil
	})
	return count, err
}
