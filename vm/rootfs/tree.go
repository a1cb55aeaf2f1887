package rootfs

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// nodeKind is the file type of a tree node.
type nodeKind int

const (
	kindDir nodeKind = iota
	kindRegular
	kindSymlink
	kindChar
	kindBlock
	kindFIFO
)

// Limits on names in layers. ext4 stores at most 255 bytes per name, and
// Linux rejects paths and symlink targets of 4096 bytes or more.
const (
	maxNameLen   = 255
	maxPathLen   = 4095
	maxTargetLen = 4095
)

// node is one inode of the root file system being assembled. Hard links
// are names that share one *node.
type node struct {
	kind  nodeKind
	perm  uint32 // permission bits with setuid, setgid and sticky
	uid   int
	gid   int
	mtime time.Time

	children map[string]*node // directories only
	// childLayers maps each child name to the index of the last layer that
	// put it or a path below it, because an opaque whiteout removes only
	// what lower layers put in the directory. Directories only.
	childLayers map[string]int
	target      string // symlink target
	major       int64  // device nodes
	minor       int64
	size        int64  // regular files
	data        string // regular files with content: file under the build dir

	// xattrs maps extended attribute names, such as security.capability,
	// to raw values.
	xattrs map[string]string
}

// tree is the root file system assembled in memory from layers. File
// contents live in files under the build dir; the tree holds their names.
type tree struct {
	root *node
}

func newTree() *tree {
	return &tree{root: newDir()}
}

func newDir() *node {
	return &node{kind: kindDir, perm: 0o755, children: map[string]*node{}, childLayers: map[string]int{}}
}

// setChild puts n at name in dir for layer.
func (dir *node) setChild(name string, n *node, layer int) {
	dir.children[name] = n
	dir.childLayers[name] = layer
}

// splitPath cleans a path from a layer into its names. A leading "/" or
// "./" is dropped, as image builders write both forms. ".." is rejected:
// a layer must not name anything outside the root.
func splitPath(p string) ([]string, error) {
	if len(p) > maxPathLen {
		return nil, fmt.Errorf("path %.64q... is %d bytes long, more than the maximum of %d", p, len(p), maxPathLen)
	}
	var names []string
	for _, name := range strings.Split(p, "/") {
		switch name {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("path %q contains \"..\", which would leave the root file system", p)
		}
		if len(name) > maxNameLen {
			return nil, fmt.Errorf("path %q has a name of %d bytes, more than the ext4 maximum of %d", p, len(name), maxNameLen)
		}
		if strings.ContainsRune(name, '\n') {
			return nil, fmt.Errorf("path %q contains a newline, which spore cannot pass to debugfs", p)
		}
		names = append(names, name)
	}
	return names, nil
}

// parentDir returns the directory that holds names[len(names)-1], creating
// missing directories, and marks the directories on the way as used by
// layer when create is set. It never goes through a symlink:
// a layer that writes below a symlink could write anywhere, so that is an
// error, as is a path whose parent is not a directory.
func (t *tree) parentDir(names []string, layer int, create bool) (*node, error) {
	dir := t.root
	for i, name := range names[:len(names)-1] {
		child := dir.children[name]
		if child == nil {
			if !create {
				return nil, nil
			}
			child = newDir()
			dir.setChild(name, child, layer)
		}
		switch child.kind {
		case kindDir:
			if create {
				dir.childLayers[name] = layer
			}
			dir = child
		case kindSymlink:
			return nil, fmt.Errorf("path %q goes through the symlink /%s (-> %q), and layers must not write through symlinks", strings.Join(names, "/"), strings.Join(names[:i+1], "/"), child.target)
		default:
			return nil, fmt.Errorf("path %q goes through /%s, which is not a directory", strings.Join(names, "/"), strings.Join(names[:i+1], "/"))
		}
	}
	return dir, nil
}

// lookup returns the node at names without following symlinks, or nil.
func (t *tree) lookup(names []string) (*node, error) {
	if len(names) == 0 {
		return t.root, nil
	}
	dir, err := t.parentDir(names, 0, false)
	if err != nil || dir == nil {
		return nil, err
	}
	return dir.children[names[len(names)-1]], nil
}

// put places n at names. A directory over a directory keeps the children
// and takes the new metadata; anything else replaces what was there.
func (t *tree) put(names []string, n *node, layer int) error {
	if len(names) == 0 {
		if n.kind != kindDir {
			return fmt.Errorf("the root entry is not a directory")
		}
		t.root.perm, t.root.uid, t.root.gid, t.root.mtime, t.root.xattrs = n.perm, n.uid, n.gid, n.mtime, n.xattrs
		return nil
	}
	dir, err := t.parentDir(names, layer, true)
	if err != nil {
		return err
	}
	name := names[len(names)-1]
	old := dir.children[name]
	if old != nil && old.kind == kindDir && n.kind == kindDir {
		old.perm, old.uid, old.gid, old.mtime, old.xattrs = n.perm, n.uid, n.gid, n.mtime, n.xattrs
		dir.childLayers[name] = layer
		return nil
	}
	if n.kind == kindDir && n.children == nil {
		n.children, n.childLayers = map[string]*node{}, map[string]int{}
	}
	dir.setChild(name, n, layer)
	return nil
}

// whiteout applies a whiteout entry: ".wh.NAME" removes NAME from the
// directory, and ".wh..wh..opq" removes what lower layers put in it.
func (t *tree) whiteout(names []string, layer int) error {
	base := names[len(names)-1]
	dir, err := t.parentDir(names, layer, false)
	if err != nil || dir == nil {
		return err
	}

	if base == opaqueWhiteout {
		dir.removeLowerLayers(layer)
		return nil
	}

	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("whiteout %q names %q, not an entry of its directory; a whiteout must name a file in the same directory", strings.Join(names, "/"), victim)
	}
	delete(dir.children, victim)
	delete(dir.childLayers, victim)
	return nil
}

// removeLowerLayers applies an opaque whiteout of layer to dir: it removes
// the children that lower layers put there. A directory that layer put
// there too stays, but only with what layer put in it, because the lower
// directory it was merged with is hidden as a whole.
func (dir *node) removeLowerLayers(layer int) {
	for name, child := range dir.children {
		if dir.childLayers[name] < layer {
			delete(dir.children, name)
			delete(dir.childLayers, name)
			continue
		}
		if child.kind == kindDir {
			child.removeLowerLayers(layer)
		}
	}
}

// Whiteout names from the OCI image layer specification.
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// walk calls fn for every name in the tree in sorted order, parents before
// children. path is "/" for the root and "/a/b" below it.
func (t *tree) walk(fn func(path string, n *node) error) error {
	if err := fn("/", t.root); err != nil {
		return err
	}
	return walkDir("", t.root, fn)
}

func walkDir(prefix string, dir *node, fn func(string, *node) error) error {
	names := make([]string, 0, len(dir.children))
	for name := range dir.children {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		child := dir.children[name]
		path := prefix + "/" + name
		if err := fn(path, child); err != nil {
			return err
		}
		if child.kind == kindDir {
			if err := walkDir(path, child, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
