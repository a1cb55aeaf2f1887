package testbed

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// initramfs writes a cpio "newc" archive for the kernel to unpack as its
// root filesystem. Parent directories are added on demand, because the
// kernel's unpacker does not create them.
type initramfs struct {
	w    *cpio.Writer
	dirs map[string]bool
}

func newInitramfs(w io.Writer) *initramfs {
	return &initramfs{w: cpio.NewWriter(w), dirs: map[string]bool{"/": true}}
}

// mkdirAll adds directory entries for dir and its parents.
func (a *initramfs) mkdirAll(dir string) error {
	dir = path.Clean("/" + dir)
	if a.dirs[dir] {
		return nil
	}
	if err := a.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	a.dirs[dir] = true
	return a.w.WriteHeader(&cpio.Header{
		Name:    strings.TrimPrefix(dir, "/"),
		Mode:    cpio.TypeDir | 0o755,
		ModTime: time.Unix(0, 0),
		Links:   2,
	})
}

// addBytes adds a regular file with the given content and permission bits.
func (a *initramfs) addBytes(name string, data []byte, perm os.FileMode) error {
	name = path.Clean("/" + name)
	if err := a.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	err := a.w.WriteHeader(&cpio.Header{
		Name:    strings.TrimPrefix(name, "/"),
		Mode:    cpio.TypeReg | cpio.FileMode(perm.Perm()),
		Size:    int64(len(data)),
		ModTime: time.Unix(0, 0),
		Links:   1,
	})
	if err != nil {
		return err
	}
	_, err = a.w.Write(data)
	return err
}

// addFile copies one host file into the archive at name, keeping its
// permission bits.
func (a *initramfs) addFile(name, hostPath string) error {
	f, err := os.Open(hostPath)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", hostPath)
	}

	name = path.Clean("/" + name)
	if err := a.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	err = a.w.WriteHeader(&cpio.Header{
		Name:    strings.TrimPrefix(name, "/"),
		Mode:    cpio.TypeReg | cpio.FileMode(info.Mode().Perm()),
		Size:    info.Size(),
		ModTime: time.Unix(0, 0),
		Links:   1,
	})
	if err != nil {
		return err
	}
	if _, err := io.Copy(a.w, bufio.NewReader(f)); err != nil {
		return fmt.Errorf("copy %s into initramfs: %w", hostPath, err)
	}
	return nil
}

// addTree copies a host file or directory tree to name. Symbolic links are
// kept as links; other special files are skipped.
func (a *initramfs) addTree(name, hostPath string) error {
	info, err := os.Stat(hostPath)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return a.addFile(name, hostPath)
	}

	var paths []string
	err = filepath.WalkDir(hostPath, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)

	for _, p := range paths {
		rel, _ := filepath.Rel(hostPath, p)
		target := path.Join(name, filepath.ToSlash(rel))
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			err = a.mkdirAll(target)
		case info.Mode()&os.ModeSymlink != 0:
			err = a.addSymlink(target, p)
		case info.Mode().IsRegular():
			err = a.addFile(target, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *initramfs) addSymlink(name, hostPath string) error {
	link, err := os.Readlink(hostPath)
	if err != nil {
		return err
	}
	if err := a.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := a.w.WriteHeader(&cpio.Header{
		Name:     strings.TrimPrefix(name, "/"),
		Mode:     cpio.TypeSymlink | 0o777,
		Size:     int64(len(link)),
		ModTime:  time.Unix(0, 0),
		Links:    1,
		Linkname: link,
	}); err != nil {
		return err
	}
	_, err = a.w.Write([]byte(link))
	return err
}

// Close writes the archive trailer.
func (a *initramfs) Close() error { return a.w.Close() }
