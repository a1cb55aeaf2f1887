package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// emitted is the result of writing a tree to a host directory: the debugfs
// script that sets what an ordinary user cannot set on host files, and the
// counts that size the ext4 image.
type emitted struct {
	script     strings.Builder
	xattrFiles int
	inodes     int64
	blocks     int64 // 4 KiB blocks of file data, directories and long symlinks
}

// hostOwner returns the owner that host files created by this process get,
// which mke2fs -d copies into the image. Tests replace it to take the path
// of another user.
var hostOwner = func() (uid, gid int) { return os.Geteuid(), os.Getegid() }

// emitTree writes t below rootDir, which must exist and be empty. It
// creates only directories, regular files and symlinks on the host. Every
// host path is rootDir joined with names that splitPath checked, and every
// parent is a directory that this function created, so no symlink is
// followed. Owners, modes, device nodes, FIFOs and extended attributes go
// into the debugfs script, which works on the ext4 image, not the host.
func emitTree(t *tree, rootDir, xattrDir string) (*emitted, error) {
	out := &emitted{}
	firstPath := map[*node]string{}
	euid, egid := hostOwner()

	var dirs []string
	dirTimes := map[string]time.Time{}
	err := t.walk(func(path string, n *node) error {
		host := filepath.Join(rootDir, filepath.FromSlash(path))

		if first, ok := firstPath[n]; ok {
			if n.kind == kindRegular || n.kind == kindSymlink {
				return os.Link(filepath.Join(rootDir, filepath.FromSlash(first)), host)
			}
			// NOTE: debugfs cannot link device nodes, so each name of a
			// hard-linked device node or FIFO becomes its own inode.
		}
		firstPath[n] = path
		out.inodes++

		switch n.kind {
		case kindDir:
			if path != "/" {
				if err := os.Mkdir(host, 0o700); err != nil {
					return err
				}
			}
			dirs = append(dirs, host)
			dirTimes[host] = n.mtime
			out.blocks++
		case kindRegular:
			if err := writeRegular(host, n); err != nil {
				return err
			}
			out.blocks += (n.size + 4095) / 4096
		case kindSymlink:
			if err := os.Symlink(n.target, host); err != nil {
				return err
			}
			if err := unix.Lutimes(host, []unix.Timeval{unix.NsecToTimeval(n.mtime.Unix() * 1e9), unix.NsecToTimeval(n.mtime.Unix() * 1e9)}); err != nil {
				return fmt.Errorf("set times of %s: %w", host, err)
			}
			if len(n.target) >= 60 {
				out.blocks++
			}
		default:
			out.writeMknod(path, n)
		}

		out.writeInodeFields(path, n, euid, egid)
		return out.writeXattrs(path, n, xattrDir)
	})
	if err != nil {
		return nil, err
	}

	// Directories get their times last, because adding children changed
	// them, and keep owner write access so the steps above could run.
	for i := len(dirs) - 1; i >= 0; i-- {
		mtime := dirTimes[dirs[i]]
		if err := os.Chtimes(dirs[i], mtime.Truncate(time.Second), mtime.Truncate(time.Second)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeRegular moves a file's content from the data dir into place, or
// creates an empty file. The host file stays readable by its owner so
// mke2fs can read it; the real mode comes from the script.
func writeRegular(host string, n *node) error {
	if n.data != "" {
		if err := os.Rename(n.data, host); err != nil {
			return err
		}
		n.data = ""
	} else {
		f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if err := os.Chmod(host, 0o600); err != nil {
		return err
	}
	mtime := n.mtime.Truncate(time.Second)
	return os.Chtimes(host, mtime, mtime)
}

// writeMknod adds the commands that create a device node or FIFO in the
// image. debugfs's mknod takes a name in the current directory, not a path.
func (out *emitted) writeMknod(path string, n *node) {
	dir, name := filepath.Split(path)
	fmt.Fprintf(&out.script, "cd %s\n", debugfsQuote(dir))
	switch n.kind {
	case kindChar:
		fmt.Fprintf(&out.script, "mknod %s c %d %d\n", debugfsQuote(name), n.major, n.minor)
	case kindBlock:
		fmt.Fprintf(&out.script, "mknod %s b %d %d\n", debugfsQuote(name), n.major, n.minor)
	case kindFIFO:
		fmt.Fprintf(&out.script, "mknod %s p\n", debugfsQuote(name))
	}
	out.script.WriteString("cd /\n")
}

// writeInodeFields adds the commands that set mode, owner and times.
// mke2fs -d copies the host
// file's owner and ctime, which depend on who ran the build and when, so
// the script sets them from the layer for reproducible output.
func (out *emitted) writeInodeFields(path string, n *node, euid, egid int) {
	q := debugfsQuote(path)
	fmt.Fprintf(&out.script, "sif %s mode 0%o\n", q, n.kind.typeBits()|n.perm)
	if n.uid != euid || n.kind >= kindChar {
		fmt.Fprintf(&out.script, "sif %s uid %d\n", q, n.uid)
	}
	if n.gid != egid || n.kind >= kindChar {
		fmt.Fprintf(&out.script, "sif %s gid %d\n", q, n.gid)
	}
	seconds := n.mtime.Unix()
	fmt.Fprintf(&out.script, "sif %s ctime @%d\n", q, seconds)
	if n.kind >= kindChar {
		fmt.Fprintf(&out.script, "sif %s mtime @%d\n", q, seconds)
		fmt.Fprintf(&out.script, "sif %s atime @%d\n", q, seconds)
	}
}

// writeXattrs adds the commands that set extended attributes from files
// with their raw values, because values such as security.capability are
// binary.
func (out *emitted) writeXattrs(path string, n *node, xattrDir string) error {
	names := make([]string, 0, len(n.xattrs))
	for name := range n.xattrs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.ContainsAny(name, "\n\" ") {
			return fmt.Errorf("%s: extended attribute name %q contains a quote, space or newline", path, name)
		}
		out.xattrFiles++
		valueFile := filepath.Join(xattrDir, strconv.Itoa(out.xattrFiles))
		if err := os.WriteFile(valueFile, []byte(n.xattrs[name]), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&out.script, "ea_set -f %s %s %s\n", debugfsQuote(valueFile), debugfsQuote(path), name)
	}
	return nil
}

// typeBits returns the S_IFMT bits of an inode of kind k.
func (k nodeKind) typeBits() uint32 {
	switch k {
	case kindDir:
		return unix.S_IFDIR
	case kindRegular:
		return unix.S_IFREG
	case kindSymlink:
		return unix.S_IFLNK
	case kindChar:
		return unix.S_IFCHR
	case kindBlock:
		return unix.S_IFBLK
	default:
		return unix.S_IFIFO
	}
}

// debugfsQuote quotes s as one argument of a debugfs command line: inside
// double quotes, a doubled quote stands for one quote.
func debugfsQuote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
