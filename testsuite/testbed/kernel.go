package testbed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// KernelMetapackage is the Debian package the testbed follows. Debian
// replaces the versioned kernel package it depends on with each security
// update, so the harness resolves the dependency every time.
const KernelMetapackage = "linux-image-cloud-arm64"

// kernelEnv names a kernel Image to use instead of Debian's package.
const kernelEnv = "SPORE_TESTBED_KERNEL"

// aptSetupHint is the fix for missing arm64 package lists.
const aptSetupHint = "run as root: dpkg --add-architecture arm64 && apt-get update"

// HostKernel is the kernel the testbed boots as its KVM host.
type HostKernel struct {
	// Package is the versioned Debian package, such as
	// linux-image-6.1.0-57-cloud-arm64, or "custom" for SPORE_TESTBED_KERNEL.
	Package string
	// Version is the Debian package version, such as 6.1.192-3.
	Version string
	// Path is the uncompressed arm64 Image file.
	Path string
}

func (k HostKernel) String() string {
	return fmt.Sprintf("%s %s (%s)", k.Package, k.Version, k.Path)
}

// FindHostKernel returns the testbed host kernel: the file named by
// SPORE_TESTBED_KERNEL, or the Image of the package that Debian's
// linux-image-cloud-arm64 currently depends on, downloaded with apt (which
// verifies it against the signed archive) and cached under the user cache
// directory.
func FindHostKernel(ctx context.Context) (HostKernel, error) {
	if path := os.Getenv(kernelEnv); path != "" {
		if _, err := os.Stat(path); err != nil {
			return HostKernel{}, fmt.Errorf("%s=%s: %w", kernelEnv, path, err)
		}
		return HostKernel{Package: "custom", Version: "unknown", Path: path}, nil
	}

	pkg, version, err := resolveKernelPackage(ctx)
	if err != nil {
		return HostKernel{}, err
	}
	cacheDir, err := kernelCacheDir()
	if err != nil {
		return HostKernel{}, err
	}
	k := HostKernel{
		Package: pkg,
		Version: version,
		Path:    filepath.Join(cacheDir, pkg+"_"+version, "Image"),
	}
	if _, err := os.Stat(k.Path); err == nil {
		return k, nil
	}
	if err := downloadKernel(ctx, k); err != nil {
		return HostKernel{}, err
	}
	return k, nil
}

func kernelCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the user cache directory for the testbed kernel: %w", err)
	}
	return filepath.Join(base, "spore", "testbed"), nil
}

var dependsLine = regexp.MustCompile(`^\s*Depends: (linux-image-[^:\s]+)`)

// resolveKernelPackage queries apt for versioned kernel package the
// metapackage's candidate version depends on, and that package's version.
func resolveKernelPackage(ctx context.Context) (pkg, version string, err error) {
	out, err := runTool(ctx, "apt-cache", "depends", KernelMetapackage+":arm64")
	if err != nil {
		return "", "", fmt.Errorf("resolve the testbed kernel package: %w (%s)", err, aptSetupHint)
	}
	for _, line := range strings.Split(out, "\n") {
		if m := dependsLine.FindStringSubmatch(line); m != nil {
			pkg = m[1]
			break
		}
	}
	if pkg == "" {
		return "", "", fmt.Errorf("apt-cache depends %s:arm64 names no linux-image package; %s", KernelMetapackage, aptSetupHint)
	}

	out, err = runTool(ctx, "apt-cache", "policy", pkg+":arm64")
	if err != nil {
		return "", "", fmt.Errorf("resolve the version of %s: %w", pkg, err)
	}
	scanner := bufio.NewScanner(strings.NewReader(out))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if v, ok := strings.CutPrefix(line, "Candidate:"); ok {
			version = strings.TrimSpace(v)
		}
	}
	if version == "" || version == "(none)" {
		return "", "", fmt.Errorf("apt has no candidate version of %s:arm64; %s", pkg, aptSetupHint)
	}
	return pkg, version, nil
}

// downloadKernel fetches the package with apt-get download, extracts
// boot/vmlinuz-* and moves it into place atomically.
func downloadKernel(ctx context.Context, k HostKernel) error {
	dir := filepath.Dir(k.Path)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "download-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	spec := fmt.Sprintf("%s:arm64=%s", k.Package, k.Version)
	if _, err := runToolIn(ctx, tmp, "apt-get", "download", spec); err != nil {
		return fmt.Errorf("download %s: %w", spec, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("download %s: expected one .deb in %s, found %d", spec, tmp, len(debs))
	}
	extracted := filepath.Join(tmp, "root")
	if _, err := runTool(ctx, "dpkg-deb", "-x", debs[0], extracted); err != nil {
		return fmt.Errorf("extract %s: %w", debs[0], err)
	}
	images, _ := filepath.Glob(filepath.Join(extracted, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return fmt.Errorf("%s contains %d boot/vmlinuz-* files, expected 1", debs[0], len(images))
	}

	staged := filepath.Join(tmp, "staged")
	if err := os.MkdirAll(staged, 0o755); err != nil {
		return err
	}
	if err := os.Rename(images[0], filepath.Join(staged, "Image")); err != nil {
		return err
	}
	if err := os.Rename(staged, dir); err != nil && !errors.Is(err, os.ErrExist) {
		// Another process may have finished the same download first.
		if _, statErr := os.Stat(k.Path); statErr != nil {
			return fmt.Errorf("install testbed kernel into %s: %w", dir, err)
		}
	}
	return nil
}

func runTool(ctx context.Context, name string, args ...string) (string, error) {
	return runToolIn(ctx, "", name, args...)
}

// runToolIn runs a command and returns its stdout; a failure carries the
// command's stderr.
func runToolIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	if _, err := exec.LookPath(name); err != nil {
		return "", fmt.Errorf("%s not found: the testbed needs Debian's apt tools", name)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
