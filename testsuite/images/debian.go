package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Debian release and mirror of the minbase image.
const (
	DebianSuite  = "bookworm"
	DebianMirror = "http://deb.debian.org/debian"
)

// ErrNeedsRoot is returned by Debian when the layer is not cached yet and
// the process is not root, which debootstrap needs.
var ErrNeedsRoot = errors.New("debootstrap needs root")

// DebianMarker is the value of SPORE_IMAGE in the Debian image's Env.
const DebianMarker = "SPORE_IMAGE=debian-test"

// Debian returns a one-layer arm64 image of a Debian minbase tree made by
// the first stage of debootstrap --foreign. Its packages are unpacked but
// not configured; /etc/os-release is in place. Its config sets
// DebianMarker in Env and /root as WorkingDir.
//
// debootstrap needs root and the Debian mirror, so the layer is built once
// per machine and cached under CacheDir()/images. The file name contains
// the suite and the debootstrap version, and a .versions file beside it
// lists the packages in the layer.
// NOTE: the cached layer is not rebuilt when the suite's packages change;
// remove the file to rebuild it.
func Debian(ctx context.Context) (*Image, error) {
	layer, err := debianLayer(ctx)
	if err != nil {
		return nil, err
	}
	return &Image{
		Layers: [][]byte{layer},
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", DebianMarker},
			WorkingDir: "/root",
			Cmd:        []string{"/bin/bash"},
		},
	}, nil
}

func debianLayer(ctx context.Context) ([]byte, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	version, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", "debootstrap").Output()
	if err != nil {
		return nil, fmt.Errorf("find the debootstrap version: %w (install debootstrap)", err)
	}
	name := fmt.Sprintf("debian-%s-arm64-minbase-debootstrap-%s.tar", DebianSuite, strings.ReplaceAll(string(version), "+", "_"))
	path := filepath.Join(cache, "images", name)
	if layer, err := os.ReadFile(path); err == nil {
		return layer, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: run the test as root once to build %s, or copy that file from a machine that built it", ErrNeedsRoot, path)
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(filepath.Dir(path), "debootstrap-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	cmd := exec.CommandContext(ctx, "debootstrap", "--foreign", "--arch", "arm64", "--variant=minbase", DebianSuite, root, DebianMirror)
	if output, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("debootstrap: %w: %s", err, tail(output))
	}

	// The downloaded packages are only needed by the second stage.
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	for _, deb := range debs {
		if err := os.Remove(deb); err != nil {
			return nil, err
		}
	}
	layer, err := TarTree(root)
	if err != nil {
		return nil, err
	}
	versions, _ := os.ReadFile(filepath.Join(root, "debootstrap", "debpaths"))
	if err := os.WriteFile(path+".versions", versions, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".tmp", layer, 0o644); err != nil {
		return nil, err
	}
	return layer, os.Rename(path+".tmp", path)
}

// TarTree returns a layer tar of the directory root, entries sorted by
// path, with owners, modes, times, hard links, device nodes and extended
// attributes as they are on disk.
func TarTree(root string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	firstName := map[[2]uint64]string{}
	for _, path := range paths {
		if err := addToTar(tw, root, path, firstName); err != nil {
			return nil, fmt.Errorf("tar %s: %w", path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func addToTar(tw *tar.Writer, root, path string, firstName map[[2]uint64]string) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(root, path)
	hdr.Name = filepath.ToSlash(rel)
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.AccessTime, hdr.ChangeTime = time0, time0
	hdr.Format = tar.FormatPAX

	st := info.Sys().(*syscall.Stat_t)
	if info.Mode().IsRegular() && st.Nlink > 1 {
		id := [2]uint64{st.Dev, st.Ino}
		if first, ok := firstName[id]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			firstName[id] = hdr.Name
		}
	}
	if err := addXattrs(hdr, path); err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// addXattrs records a file's extended attributes as PAX records.
func addXattrs(hdr *tar.Header, path string) error {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		return nil // no xattr support or none set
	}
	list := make([]byte, size)
	if size, err = unix.Llistxattr(path, list); err != nil {
		return err
	}
	for _, name := range strings.Split(strings.TrimRight(string(list[:size]), "\x00"), "\x00") {
		value := make([]byte, 64<<10)
		n, err := unix.Lgetxattr(path, name, value)
		if err != nil {
			return fmt.Errorf("read xattr %s: %w", name, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+name] = string(value[:n])
	}
	return nil
}

// time0 is the zero time; tar then leaves access and change times out.
var time0 time.Time

func tail(output []byte) string {
	lines := strings.Split(strings.TrimSpace(string(output)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}
