package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// paxXattrPrefix marks extended attributes in PAX records, as GNU tar,
// Docker and BuildKit write them.
const paxXattrPrefix = "SCHILY.xattr."

// applier applies layer tar streams to a tree. File contents go to files
// in dataDir, named by a counter, so no name from a layer ever becomes a
// host path.
type applier struct {
	tree    *tree
	dataDir string
	files   int
}

// applyLayer reads one uncompressed layer and applies its entries in order.
// Errors name the entry; the caller adds the layer.
func (a *applier) applyLayer(r io.Reader, layer int) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := a.applyEntry(tr, hdr, layer); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

func (a *applier) applyEntry(tr *tar.Reader, hdr *tar.Header, layer int) error {
	names, err := splitPath(hdr.Name)
	if err != nil {
		return err
	}

	if len(names) > 0 && strings.HasPrefix(names[len(names)-1], whiteoutPrefix) {
		return a.tree.whiteout(names, layer)
	}

	if isSparse(hdr) {
		return fmt.Errorf("sparse tar entries are not supported (rebuild the layer without --sparse)")
	}
	if hdr.Typeflag == tar.TypeLink {
		return a.link(names, hdr.Linkname, layer)
	}

	n := &node{
		perm:   uint32(hdr.Mode) & 0o7777,
		uid:    hdr.Uid,
		gid:    hdr.Gid,
		mtime:  hdr.ModTime,
		xattrs: entryXattrs(hdr),
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > math.MaxUint32 || int64(hdr.Gid) > math.MaxUint32 {
		return fmt.Errorf("invalid owner %d:%d: ext4 owners are 0 to %d", hdr.Uid, hdr.Gid, uint32(math.MaxUint32))
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		n.kind = kindDir
	case tar.TypeReg, tar.TypeRegA:
		n.kind = kindRegular
		if err := a.storeContent(n, tr, hdr.Size); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) > maxTargetLen {
			return fmt.Errorf("symlink target of %d bytes; it must be 1 to %d bytes", len(hdr.Linkname), maxTargetLen)
		}
		n.kind = kindSymlink
		n.target = hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		n.kind = kindChar
		if hdr.Typeflag == tar.TypeBlock {
			n.kind = kindBlock
		}
		n.major, n.minor = hdr.Devmajor, hdr.Devminor
	case tar.TypeFifo:
		n.kind = kindFIFO
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	return a.tree.put(names, n, layer)
}

// link adds a hard link: the new name shares the target's node.
func (a *applier) link(names []string, linkname string, layer int) error {
	if len(names) == 0 {
		return fmt.Errorf("hard link at the root directory")
	}
	targetNames, err := splitPath(linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	target, err := a.tree.lookup(targetNames)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if target == nil {
		return fmt.Errorf("hard link target %q does not exist in this or a lower layer", linkname)
	}
	if target.kind == kindDir {
		return fmt.Errorf("hard link target %q is a directory", linkname)
	}
	return a.tree.put(names, target, layer)
}

// storeContent copies a regular file's content to a new file in dataDir.
func (a *applier) storeContent(n *node, r io.Reader, size int64) error {
	n.size = size
	if size == 0 {
		return nil
	}
	a.files++
	path := filepath.Join(a.dataDir, strconv.Itoa(a.files))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	written, err := io.Copy(f, r)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("write content: %w", err)
	}
	if written != size {
		return fmt.Errorf("content is %d bytes, but the tar header gives %d", written, size)
	}
	n.data = path
	return nil
}

// entryXattrs returns the extended attributes of a tar entry, or nil.
func entryXattrs(hdr *tar.Header) map[string]string {
	var xattrs map[string]string
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, paxXattrPrefix)
		if !ok || name == "" {
			continue
		}
		if xattrs == nil {
			xattrs = map[string]string{}
		}
		xattrs[name] = value
	}
	return xattrs
}

// isSparse reports whether hdr is a GNU or PAX sparse file, whose holes
// the tar reader would expand to zeros of any declared size.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for key := range hdr.PAXRecords {
		if strings.HasPrefix(key, "GNU.sparse.") {
			return true
		}
	}
	return false
}
