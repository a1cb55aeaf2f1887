// Package rootfs builds ext4 root file systems from arm64 OCI images.
//
// Build pulls an image manifest and its layers from a registry or a local
// OCI image layout, resolving an image index by platform. It applies the
// layers in order with whiteouts and opaque directories and writes an
// ext4 image without root privileges. Results are cached by manifest
// digest, platform and builder version, so a second build of the same
// image fetches no layer and writes no ext4.
package rootfs

import (
	"context"
	"log/slog"
)

// DefaultPlatform is the platform that Build selects from an image index
// when BuildOptions.Platform is empty.
const DefaultPlatform = "linux/arm64"

// Image is an ext4 root file system built from an OCI image.
type Image struct {
	// Path is the ext4 file in the cache. Callers must not modify it:
	// other builds and processes share it.
	Path string `json:"path"`
	// ManifestDigest is the sha256 digest of the platform manifest.
	ManifestDigest string `json:"manifest_digest"`
	// Platform is the OS and architecture of the image, such as
	// "linux/arm64".
	Platform string `json:"platform"`
	// Config holds the run settings from the image config.
	Config ImageConfig `json:"config"`
	// Size is the size of the ext4 file in bytes.
	Size int64 `json:"size"`
	// Cached is true when the cache served the image: no layer was
	// fetched and no ext4 was built.
	Cached bool `json:"cached"`
}

// ImageConfig holds the run settings of an OCI image config.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	User       string   `json:"user,omitempty"`
}

// BuildOptions control Build.
type BuildOptions struct {
	// Platform selects the manifest from an image index, as "os/arch" or
	// "os/arch/variant". Empty means DefaultPlatform.
	Platform string
	// CacheDir holds built images. Empty means DefaultCacheDir().
	CacheDir string
	// PlainHTTP talks HTTP to the registry. Loopback registries use plain
	// HTTP without it.
	PlainHTTP bool
	// Logger receives progress and debug logs. Nil means slog.Default().
	Logger *slog.Logger
	// Output, when set, is a file that receives a copy of the ext4 image.
	// The copy is written to a temporary file and renamed into place.
	Output string
}

// Build returns the ext4 root file system of image, from the cache when it
// holds one for the same manifest digest, platform and builder version.
//
// image is REGISTRY/REPO[:TAG|@DIGEST], or oci-layout:PATH[:TAG|@DIGEST]
// for a local OCI image layout directory.
func Build(ctx context.Context, image string, opts BuildOptions) (*Image, error) {
	return build(ctx, image, opts)
}
