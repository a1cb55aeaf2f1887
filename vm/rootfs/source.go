package rootfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/errdef"

	"github.com/spore-vm/spore/transport"
)

// ociLayoutPrefix marks an image reference as a local OCI image layout.
const ociLayoutPrefix = "oci-layout:"

// Docker media types that registries still serve for images.
const (
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// source is an opened image reference: where to read content from and
// which tag or digest to resolve there.
type source struct {
	target    oras.ReadOnlyTarget
	reference string // tag or digest; empty for a layout with one image
	pinned    bool   // reference is a digest
	where     string // the repository or layout, for messages
}

// openSource opens image, a registry reference or oci-layout:PATH[:TAG|@DIGEST].
func openSource(ctx context.Context, image string, plainHTTP bool) (*source, error) {
	path, ok := strings.CutPrefix(image, ociLayoutPrefix)
	if !ok {
		repo, err := transport.OpenRepository(image, transport.RemoteOptions{PlainHTTP: plainHTTP})
		if err != nil {
			return nil, err
		}
		ref := repo.Reference.Reference
		if ref == "" {
			ref = "latest"
		}
		where := "repository " + repo.Reference.Registry + "/" + repo.Reference.Repository
		return &source{target: repo, reference: ref, pinned: strings.Contains(ref, ":"), where: where}, nil
	}

	src := &source{}
	if at := strings.LastIndex(path, "@"); at >= 0 {
		path, src.reference, src.pinned = path[:at], path[at+1:], true
	} else if colon := strings.LastIndex(path, ":"); colon > strings.LastIndex(path, "/") {
		path, src.reference = path[:colon], path[colon+1:]
	}
	if path == "" {
		return nil, fmt.Errorf("image %q names no OCI layout directory (write oci-layout:PATH[:TAG|@DIGEST])", image)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open OCI layout %q: %w", path, err)
	}
	store, err := oci.NewFromFS(ctx, os.DirFS(path))
	if err != nil {
		return nil, fmt.Errorf("open OCI layout %q: %w (a layout has oci-layout and index.json files)", path, err)
	}
	src.target = store
	src.where = "OCI layout " + path
	if src.reference == "" {
		src.reference, err = onlyManifest(path)
		if err != nil {
			return nil, err
		}
	}
	return src, nil
}

// onlyManifest returns the digest of the one manifest in a layout's
// index.json, or an error that lists the tags to choose from.
func onlyManifest(layout string) (string, error) {
	raw, err := os.ReadFile(layout + "/index.json")
	if err != nil {
		return "", fmt.Errorf("read OCI layout index: %w", err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(raw, &index); err != nil {
		return "", fmt.Errorf("invalid OCI layout index %s/index.json: %w", layout, err)
	}
	if len(index.Manifests) == 1 {
		return index.Manifests[0].Digest.String(), nil
	}
	var tags []string
	for _, m := range index.Manifests {
		if tag := m.Annotations[ocispec.AnnotationRefName]; tag != "" {
			tags = append(tags, tag)
		}
	}
	return "", fmt.Errorf("OCI layout %s contains %d manifests: name one as oci-layout:%s:TAG (tags: %s) or oci-layout:%s@DIGEST", layout, len(index.Manifests), layout, strings.Join(tags, ", "), layout)
}

// resolvedImage is the platform manifest of an image and its config.
type resolvedImage struct {
	manifestDesc ocispec.Descriptor
	manifest     ocispec.Manifest
	config       ocispec.Image
}

// resolve finds the manifest of platform ("os/arch[/variant]"), choosing
// from an image index when the reference names one.
func (src *source) resolve(ctx context.Context, platform string) (*resolvedImage, error) {
	desc, err := src.target.Resolve(ctx, src.reference)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q in %s (check the tag or digest, or push the image first)", errdef.ErrNotFound, src.reference, src.where)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %q in %s: %w", src.reference, src.where, err)
	}
	want, err := parsePlatform(platform)
	if err != nil {
		return nil, err
	}

	if desc.MediaType == ocispec.MediaTypeImageIndex || desc.MediaType == dockerManifestList {
		raw, err := content.FetchAll(ctx, src.target, desc)
		if err != nil {
			return nil, fmt.Errorf("fetch image index %s: %w", desc.Digest, err)
		}
		var index ocispec.Index
		if err := json.Unmarshal(raw, &index); err != nil {
			return nil, fmt.Errorf("invalid image index %s: %w", desc.Digest, err)
		}
		desc, err = pickPlatform(index, want, desc.Digest.String())
		if err != nil {
			return nil, err
		}
	}
	if desc.MediaType != ocispec.MediaTypeImageManifest && desc.MediaType != dockerManifest {
		return nil, fmt.Errorf("%s has media type %q, not an image manifest or index", desc.Digest, desc.MediaType)
	}

	raw, err := content.FetchAll(ctx, src.target, desc)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s: %w", desc.Digest, err)
	}
	img := &resolvedImage{manifestDesc: desc}
	if err := json.Unmarshal(raw, &img.manifest); err != nil {
		return nil, fmt.Errorf("invalid image manifest %s: %w", desc.Digest, err)
	}

	rawConfig, err := content.FetchAll(ctx, src.target, img.manifest.Config)
	if err != nil {
		return nil, fmt.Errorf("fetch image config %s: %w", img.manifest.Config.Digest, err)
	}
	if err := json.Unmarshal(rawConfig, &img.config); err != nil {
		return nil, fmt.Errorf("invalid image config %s: %w", img.manifest.Config.Digest, err)
	}
	got := ocispec.Platform{OS: img.config.OS, Architecture: img.config.Architecture, Variant: img.config.Variant}
	if !platformMatches(got, want) {
		return nil, fmt.Errorf("image %s is for %s, not %s (build it with platform %s, or choose an image for %s)", desc.Digest, formatPlatform(got), formatPlatform(want), formatPlatform(got), formatPlatform(want))
	}
	if n := len(img.config.RootFS.DiffIDs); n != len(img.manifest.Layers) {
		return nil, fmt.Errorf("image %s lists %d layers in its manifest but %d diff IDs in its config", desc.Digest, len(img.manifest.Layers), n)
	}
	return img, nil
}

func pickPlatform(index ocispec.Index, want ocispec.Platform, indexDigest string) (ocispec.Descriptor, error) {
	var offered []string
	for _, m := range index.Manifests {
		if m.Platform == nil {
			continue
		}
		if platformMatches(*m.Platform, want) {
			return m, nil
		}
		offered = append(offered, formatPlatform(*m.Platform))
	}
	return ocispec.Descriptor{}, fmt.Errorf("image index %s has no manifest for %s (it offers: %s)", indexDigest, formatPlatform(want), strings.Join(offered, ", "))
}

// parsePlatform parses "os/arch[/variant]".
func parsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return ocispec.Platform{}, fmt.Errorf("invalid platform %q (write OS/ARCH[/VARIANT], for example linux/arm64)", s)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// platformMatches compares OS and architecture, and the variant when both
// name one; arm64 images often leave out the "v8" variant.
func platformMatches(got, want ocispec.Platform) bool {
	if got.OS != want.OS || got.Architecture != want.Architecture {
		return false
	}
	return got.Variant == "" || want.Variant == "" || got.Variant == want.Variant
}

func formatPlatform(p ocispec.Platform) string {
	if p.Variant != "" {
		return p.OS + "/" + p.Architecture + "/" + p.Variant
	}
	return p.OS + "/" + p.Architecture
}
