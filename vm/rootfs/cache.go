package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// BuilderVersion names the layer and ext4 rules of this builder. It is
// part of the cache key: change it whenever the bytes Build writes for
// the same image change.
const BuilderVersion = "spore-rootfs-1"

// Cache files. Each image is a directory under imagesDir, named by its key,
// that contains imageFile and metaFile. The directory appears by an atomic
// rename, so a directory with metaFile is complete. Builds run under
// tmpDir.
const (
	imagesDir = "images"
	tmpDir    = "tmp"
	imageFile = "rootfs.ext4"
	metaFile  = "image.json"
)

// CacheEntry describes one built image in the cache.
type CacheEntry struct {
	Key            string      `json:"key"`
	Path           string      `json:"path"`
	Reference      string      `json:"reference"`
	ManifestDigest string      `json:"manifest_digest"`
	Platform       string      `json:"platform"`
	Builder        string      `json:"builder"`
	E2fsprogs      string      `json:"e2fsprogs"`
	Config         ImageConfig `json:"config"`
	Size           int64       `json:"size"`
	BuiltAt        time.Time   `json:"built_at"`
	// LastUsed is when a build last returned the entry.
	LastUsed time.Time `json:"last_used"`
}

// DefaultCacheDir returns $XDG_CACHE_HOME/spore/rootfs, or
// ~/.cache/spore/rootfs.
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w (set XDG_CACHE_HOME or HOME, or pass a cache directory)", err)
	}
	return filepath.Join(dir, "spore", "rootfs"), nil
}

// cacheKey names the cache entry of a manifest built for platform by this
// builder version.
func cacheKey(manifestDigest, platform string) string {
	sum := sha256.Sum256([]byte(BuilderVersion + "\n" + manifestDigest + "\n" + platform + "\n"))
	return hex.EncodeToString(sum[:16])
}

// lookupCache returns the cached entry for key and marks it used, or nil.
func lookupCache(cacheDir, key string) (*CacheEntry, error) {
	dir := filepath.Join(cacheDir, imagesDir, key)
	entry, err := readEntry(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if err := os.Chtimes(filepath.Join(dir, metaFile), now, now); err != nil {
		return nil, err
	}
	entry.LastUsed = now
	return entry, nil
}

func readEntry(dir string) (*CacheEntry, error) {
	raw, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	var entry CacheEntry
	if err := json.Unmarshal(raw, &entry); err != nil {
		return nil, fmt.Errorf("invalid cache entry %s: %w (run spore rootfs prune --all)", dir, err)
	}
	info, err := os.Stat(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	entry.Key = filepath.Base(dir)
	entry.Path = filepath.Join(dir, imageFile)
	entry.LastUsed = info.ModTime()
	return &entry, nil
}

// commitCache moves a finished build dir (imageFile inside) into the cache
// under key. When another process stored the same key first, its entry
// wins, because both contain the same bytes.
func commitCache(cacheDir, key, buildDir string, entry *CacheEntry) (*CacheEntry, error) {
	raw, err := json.MarshalIndent(entry, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(buildDir, metaFile), raw, 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(buildDir, imageFile), 0o444); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, imagesDir), 0o755); err != nil {
		return nil, err
	}
	dir := filepath.Join(cacheDir, imagesDir, key)
	if err := os.Rename(buildDir, dir); err != nil {
		if existing, readErr := readEntry(dir); readErr == nil {
			return existing, nil
		}
		return nil, fmt.Errorf("store the image in the cache: %w", err)
	}
	return readEntry(dir)
}

// List returns the images in cacheDir (DefaultCacheDir when empty), newest
// use first.
func List(cacheDir string) ([]CacheEntry, error) {
	cacheDir, err := orDefaultCacheDir(cacheDir)
	if err != nil {
		return nil, err
	}
	dirs, err := os.ReadDir(filepath.Join(cacheDir, imagesDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var entries []CacheEntry
	for _, d := range dirs {
		entry, err := readEntry(filepath.Join(cacheDir, imagesDir, d.Name()))
		if err != nil {
			continue // an entry being removed, or a stray file
		}
		entries = append(entries, *entry)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].LastUsed.After(entries[j].LastUsed) })
	return entries, nil
}

// PruneOptions select what Prune removes. Entries of another builder
// version and abandoned build dirs are always removed.
type PruneOptions struct {
	// All removes every image.
	All bool
	// UnusedFor removes images that no build returned for this long;
	// zero keeps them.
	UnusedFor time.Duration
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
}

// PruneResult lists what Prune removed, or would remove with DryRun.
type PruneResult struct {
	Removed    []CacheEntry `json:"removed"`
	FreedBytes int64        `json:"freed_bytes"`
}

// abandonedAfter is the age after which a build dir under tmp belongs to a
// build that died. It is hours because a running build of a large image
// may take minutes.
const abandonedAfter = 6 * time.Hour

// Prune removes images from cacheDir (DefaultCacheDir when empty).
// NOTE: an image that a running VM uses can be removed; the VM keeps its
// open file, but a later build rebuilds it.
func Prune(cacheDir string, opts PruneOptions) (*PruneResult, error) {
	cacheDir, err := orDefaultCacheDir(cacheDir)
	if err != nil {
		return nil, err
	}
	entries, err := List(cacheDir)
	if err != nil {
		return nil, err
	}
	result := &PruneResult{}
	now := time.Now()
	for _, entry := range entries {
		stale := entry.Builder != BuilderVersion
		unused := opts.UnusedFor > 0 && now.Sub(entry.LastUsed) > opts.UnusedFor
		if !opts.All && !stale && !unused {
			continue
		}
		result.Removed = append(result.Removed, entry)
		result.FreedBytes += diskUsage(entry.Path)
		if !opts.DryRun {
			if err := os.RemoveAll(filepath.Dir(entry.Path)); err != nil {
				return result, err
			}
		}
	}

	builds, _ := os.ReadDir(filepath.Join(cacheDir, tmpDir))
	for _, d := range builds {
		info, err := d.Info()
		if err != nil || now.Sub(info.ModTime()) < abandonedAfter || opts.DryRun {
			continue
		}
		if err := os.RemoveAll(filepath.Join(cacheDir, tmpDir, d.Name())); err != nil {
			return result, err
		}
	}
	return result, nil
}

func orDefaultCacheDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	return DefaultCacheDir()
}
