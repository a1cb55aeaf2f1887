package disk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

// ImageRefPrefix is the namespace of the refs that remember imported
// image files: refs/disks/images/KEY points at the chunk index of the file
// whose path, device, inode, size and modification time hash to KEY. The
// refs also keep those indexes from garbage collection; delete one with
// spore refs delete to let gc collect an image no commit uses.
const ImageRefPrefix = "refs/disks/images/"

// ImportResult describes an imported image file.
type ImportResult struct {
	// Index is the chunk index of the image.
	Index objects.ID `json:"index"`
	// Size is the image size in bytes.
	Size int64 `json:"size"`
	// Cached is true when the file was imported before and was not read
	// again.
	Cached bool `json:"cached"`
	// Ref is the ref that remembers the import.
	Ref string `json:"ref"`
	// Store counts what the import wrote; zero when Cached.
	Store objects.WriteStats `json:"store"`
}

// Import stores the raw disk image at path as a chunk index. A file that
// was imported before and has not changed since (same path, device, inode,
// size and modification time) is not read again: its index is found
// through a ref under ImageRefPrefix. Otherwise the file is read in full,
// and chunks that are already stored, such as those of an earlier version
// of the same image, are not written again.
func Import(store *objects.Store, r *refs.Refs, path string) (ImportResult, error) {
	info, err := os.Stat(path)
	if err != nil {
		return ImportResult{}, fmt.Errorf("disk image: %w", err)
	}
	if !info.Mode().IsRegular() {
		return ImportResult{}, fmt.Errorf("disk image %s is not a regular file", path)
	}
	if info.Size() == 0 || info.Size()%512 != 0 {
		return ImportResult{}, fmt.Errorf("disk image %s has %d bytes, not a positive multiple of 512; resize it (truncate -s)", path, info.Size())
	}
	key, err := imageKey(path, info)
	if err != nil {
		return ImportResult{}, err
	}
	res := ImportResult{Size: info.Size(), Ref: ImageRefPrefix + key}

	// A previous import of the same file.
	id, err := r.Resolve(res.Ref)
	if err == nil {
		if ok, err := store.Has(id); err == nil && ok {
			res.Index, res.Cached = id, true
			slog.Debug("disk image already imported", "path", path, "index", id.String(), "ref", res.Ref)
			return res, nil
		}
	} else if !errors.Is(err, objects.ErrNotFound) {
		return ImportResult{}, err
	}
	old := id

	index, ws, err := store.ImportFile(path, objects.IndexOptions{})
	if err != nil {
		return ImportResult{}, fmt.Errorf("import disk image %s: %w", path, err)
	}
	res.Index, res.Store = index, ws

	// Another process may have imported the same file meanwhile; its ref
	// names the same index, so a conflict is not an error.
	var conflict *objects.RefConflictError
	if err := r.Set(res.Ref, old, index, "import disk image"); err != nil && !errors.As(err, &conflict) {
		return ImportResult{}, fmt.Errorf("remember the import of %s: %w", path, err)
	}
	slog.Debug("disk image imported", "path", path, "index", index.String(), "ref", res.Ref,
		"chunks_written", ws.ChunksWritten, "bytes_written", ws.BytesWritten)
	return res, nil
}

// imageKey identifies a version of an image file without reading it: the
// SHA-256 of its absolute path, device, inode, size and modification time
// in nanoseconds.
func imageKey(path string, info os.FileInfo) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("disk image %s: %w", path, err)
	}
	h := sha256.New()
	h.Write([]byte(abs))
	h.Write([]byte{0})
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		h.Write([]byte(strconv.FormatUint(uint64(st.Dev), 10) + ":" + strconv.FormatUint(st.Ino, 10) + ":"))
	}
	h.Write([]byte(strconv.FormatInt(info.Size(), 10) + ":" + strconv.FormatInt(info.ModTime().UnixNano(), 10)))
	return hex.EncodeToString(h.Sum(nil)), nil
}
