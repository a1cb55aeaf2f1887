package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
)

// layerCacheVersion names the layer format in cache paths: a cached
// descriptor is valid only for layers that this code writes byte for byte.
const layerCacheVersion = "pack-v1-s2"

// layerCache keeps the descriptors of each commit's own layers in a
// directory, so that a later push learns an ancestor's layer digests
// without reading and packing the ancestor's objects again. Commits are
// immutable, so an entry never goes stale; a lost or corrupt entry only
// costs a rebuild.
type layerCache struct {
	dir string
}

// defaultLayerCacheDir returns the cache directory of a store, or "" for a
// store without a directory.
func defaultLayerCacheDir(store *objects.Store) string {
	if store.Dir() == "" {
		return ""
	}
	return filepath.Join(store.Dir(), "transport-cache")
}

func (c layerCache) path(id objects.ID) string {
	return filepath.Join(c.dir, layerCacheVersion, id.String()+".json")
}

// load returns the cached descriptors of commit id's own layers.
func (c layerCache) load(id objects.ID) ([]ocispec.Descriptor, bool) {
	if c.dir == "" {
		return nil, false
	}
	data, err := os.ReadFile(c.path(id))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			slog.Warn("layer cache entry unreadable; packing the commit again", "commit", id, "error", err)
		}
		return nil, false
	}
	var descs []ocispec.Descriptor
	if err := json.Unmarshal(data, &descs); err != nil {
		slog.Warn("layer cache entry is not valid JSON; packing the commit again", "commit", id, "error", err)
		return nil, false
	}
	for _, d := range descs {
		if d.MediaType != MediaTypePack || d.Digest.Validate() != nil || d.Annotations[AnnotationCommit] != id.String() {
			slog.Warn("layer cache entry is invalid; packing the commit again", "commit", id, "layer", d.Digest)
			return nil, false
		}
	}
	return descs, true
}

// save records the descriptors of commit id's own layers. A failure is
// logged and otherwise ignored, because the cache only saves work.
func (c layerCache) save(id objects.ID, descs []ocispec.Descriptor) {
	if c.dir == "" {
		return
	}
	if err := c.write(id, descs); err != nil {
		slog.Warn("write layer cache entry", "commit", id, "error", err)
	}
}

func (c layerCache) write(id objects.ID, descs []ocispec.Descriptor) error {
	data, err := json.Marshal(descs)
	if err != nil {
		return err
	}
	path := c.path(id)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}
