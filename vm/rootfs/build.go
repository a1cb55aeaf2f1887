package rootfs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func build(ctx context.Context, image string, opts BuildOptions) (*Image, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	platform := opts.Platform
	if platform == "" {
		platform = DefaultPlatform
	}
	if _, err := parsePlatform(platform); err != nil {
		return nil, err
	}
	cacheDir, err := orDefaultCacheDir(opts.CacheDir)
	if err != nil {
		return nil, err
	}

	src, err := openSource(ctx, image, opts.PlainHTTP)
	if err != nil {
		return nil, err
	}

	// A reference pinned to a platform manifest's digest is served from
	// the cache without contacting the registry, so cached builds work
	// offline.
	if src.pinned {
		entry, err := lookupCache(cacheDir, cacheKey(src.reference, platform))
		if err != nil {
			return nil, err
		}
		if entry != nil {
			log.Debug("rootfs found in the cache by digest", "image", image, "path", entry.Path)
			return cachedImage(entry, platform, opts.Output)
		}
	}

	// Resolve the platform manifest; this reads manifests and the config,
	// never layers.
	resolved, err := src.resolve(ctx, platform)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	manifestDigest := resolved.manifestDesc.Digest.String()
	key := cacheKey(manifestDigest, platform)
	log = log.With("image", image, "manifest", manifestDigest, "platform", platform)

	// Serve from the cache.
	entry, err := lookupCache(cacheDir, key)
	if err != nil {
		return nil, err
	}
	cached := entry != nil
	if cached {
		log.Debug("rootfs found in the cache", "path", entry.Path)
	} else {
		entry, err = buildEntry(ctx, src, resolved, image, platform, cacheDir, key, log)
		if err != nil {
			return nil, err
		}
	}

	img, err := cachedImage(entry, platform, opts.Output)
	if err != nil {
		return nil, err
	}
	img.Cached = cached
	return img, nil
}

// cachedImage returns the Image of a cache entry, after copying it to
// output when that is set.
func cachedImage(entry *CacheEntry, platform, output string) (*Image, error) {
	if output != "" {
		if err := copySparse(entry.Path, output); err != nil {
			return nil, fmt.Errorf("copy the rootfs to %s: %w", output, err)
		}
	}
	return &Image{
		Path:           entry.Path,
		ManifestDigest: entry.ManifestDigest,
		Platform:       platform,
		Config:         entry.Config,
		Size:           entry.Size,
		Cached:         true,
	}, nil
}

// buildEntry fetches and applies the layers, writes the ext4 image and
// stores it in the cache. The build dir is removed on every path, so a
// failed build leaves the cache as it was.
func buildEntry(ctx context.Context, src *source, resolved *resolvedImage, image, platform, cacheDir, key string, log *slog.Logger) (*CacheEntry, error) {
	tools, err := findE2fsprogs(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, tmpDir), 0o755); err != nil {
		return nil, fmt.Errorf("create the rootfs cache: %w", err)
	}
	buildDir, err := os.MkdirTemp(filepath.Join(cacheDir, tmpDir), "build-")
	if err != nil {
		return nil, fmt.Errorf("create a build directory: %w", err)
	}
	defer os.RemoveAll(buildDir)
	start := time.Now()

	// Apply the layers to a tree in memory; contents go to data/.
	a := &applier{tree: newTree(), dataDir: filepath.Join(buildDir, "data")}
	for _, dir := range []string{a.dataDir, filepath.Join(buildDir, "root"), filepath.Join(buildDir, "xattrs")} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
	}
	err = src.applyLayers(ctx, resolved, a, func(i int, desc ocispec.Descriptor) {
		log.Debug("layer applied", "layer", i+1, "digest", desc.Digest, "bytes", desc.Size)
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	log.Debug("layers applied", "files", a.files, "seconds", time.Since(start).Seconds())

	// Write the tree to root/ and the ext4 image from it.
	out, err := emitTree(a.tree, filepath.Join(buildDir, "root"), filepath.Join(buildDir, "xattrs"))
	if err != nil {
		return nil, fmt.Errorf("image %s: write the file tree: %w", image, err)
	}
	log.Debug("tree written", "inodes", out.inodes, "seconds", time.Since(start).Seconds())
	imagePath := filepath.Join(buildDir, imageFile)
	seed := resolved.manifestDesc.Digest.String() + "\n" + platform
	if err := tools.makeExt4(ctx, log, imagePath, filepath.Join(buildDir, "root"), buildDir, out, seed); err != nil {
		return nil, fmt.Errorf("image %s: write ext4: %w", image, err)
	}

	// Drop the host tree before the rename, so the cache holds the image
	// and its metadata only.
	for _, dir := range []string{"root", "data", "xattrs"} {
		if err := os.RemoveAll(filepath.Join(buildDir, dir)); err != nil {
			return nil, err
		}
	}
	info, err := os.Stat(imagePath)
	if err != nil {
		return nil, err
	}
	entry := &CacheEntry{
		Reference:      image,
		ManifestDigest: resolved.manifestDesc.Digest.String(),
		Platform:       platform,
		Builder:        BuilderVersion,
		E2fsprogs:      tools.version,
		Config:         imageConfig(resolved.config.Config),
		Size:           info.Size(),
		BuiltAt:        time.Now().UTC(),
	}
	stored, err := commitCache(cacheDir, key, buildDir, entry)
	if err != nil {
		return nil, err
	}
	log.Info("rootfs built", "path", stored.Path, "layers", len(resolved.manifest.Layers), "inodes", out.inodes, "bytes", stored.Size, "seconds", time.Since(start).Seconds())
	return stored, nil
}

func imageConfig(c ocispec.ImageConfig) ImageConfig {
	return ImageConfig{
		Env:        c.Env,
		WorkingDir: c.WorkingDir,
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		User:       c.User,
	}
}
