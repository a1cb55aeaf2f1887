package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CacheDir returns $XDG_CACHE_HOME/spore, or ~/.cache/spore: debs/ holds
// unpacked Debian packages and images/ holds built image layers.
func CacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "spore"), nil
}

// unpackDeb downloads the Debian package pkg (such as
// "busybox-static:arm64") with apt-get and unpacks it into
// CacheDir()/debs/NAME, once per machine. It returns that directory.
func unpackDeb(ctx context.Context, pkg, name string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "debs", name)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}

	tmp, err := os.MkdirTemp(filepath.Join(cache, "debs"), name+".tmp-")
	if err != nil {
		if err := os.MkdirAll(filepath.Join(cache, "debs"), 0o755); err != nil {
			return "", err
		}
		if tmp, err = os.MkdirTemp(filepath.Join(cache, "debs"), name+".tmp-"); err != nil {
			return "", err
		}
	}
	defer os.RemoveAll(tmp)

	download := exec.CommandContext(ctx, "apt-get", "download", pkg)
	download.Dir = tmp
	if output, err := download.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w: %s (enable the arm64 architecture with dpkg --add-architecture arm64 && apt-get update)", pkg, err, strings.TrimSpace(string(output)))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files in %s, expected 1", pkg, len(debs), tmp)
	}
	root := filepath.Join(tmp, "root")
	if output, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, strings.TrimSpace(string(output)))
	}
	if err := os.Rename(root, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, nil // another test unpacked it first
		}
		return "", err
	}
	return dir, nil
}
