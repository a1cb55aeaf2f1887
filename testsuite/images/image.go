// Package images builds arm64 OCI images from Debian packages for tests,
// with no internet access beyond the Debian archive: a busybox image from
// busybox-static and a Debian minbase image from debootstrap. It writes
// them as OCI image layouts and pushes them to registries.
package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/spore-vm/spore/transport"
)

// Image is an OCI image held in memory: uncompressed layer tars and the
// run settings of its config.
type Image struct {
	// Layers are uncompressed tar streams, lowest first. They are
	// gzip-compressed when written.
	Layers [][]byte
	// Config is the run configuration: Env, WorkingDir, Cmd and so on.
	Config ocispec.ImageConfig
	// Platform defaults to linux/arm64.
	Platform ocispec.Platform
}

// blob is one encoded piece of an image.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

// encode returns the manifest, config and layer blobs. The output depends
// only on the image: gzip headers carry no time and the config no
// creation date, so the manifest digest is the same on every run.
func (img *Image) encode() (manifest blob, others []blob, err error) {
	platform := img.Platform
	if platform.Architecture == "" {
		platform = ocispec.Platform{OS: "linux", Architecture: "arm64"}
	}
	config := ocispec.Image{
		Platform: platform,
		Config:   img.Config,
		RootFS:   ocispec.RootFS{Type: "layers"},
	}

	var layers []ocispec.Descriptor
	for _, tarData := range img.Layers {
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, digest.FromBytes(tarData))
		var compressed bytes.Buffer
		zw, err := gzip.NewWriterLevel(&compressed, gzip.BestSpeed)
		if err != nil {
			return blob{}, nil, err
		}
		if _, err := zw.Write(tarData); err != nil {
			return blob{}, nil, err
		}
		if err := zw.Close(); err != nil {
			return blob{}, nil, err
		}
		b := newBlob(ocispec.MediaTypeImageLayerGzip, compressed.Bytes())
		layers = append(layers, b.desc)
		others = append(others, b)
	}

	configJSON, err := json.Marshal(config)
	if err != nil {
		return blob{}, nil, err
	}
	configBlob := newBlob(ocispec.MediaTypeImageConfig, configJSON)
	others = append(others, configBlob)

	manifestJSON, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configBlob.desc,
		Layers:    layers,
	})
	if err != nil {
		return blob{}, nil, err
	}
	manifest = newBlob(ocispec.MediaTypeImageManifest, manifestJSON)
	manifest.desc.Platform = &platform
	return manifest, others, nil
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: content.NewDescriptorFromBytes(mediaType, data), data: data}
}

// WriteLayout writes the image to an OCI image layout in dir under tag and
// returns the manifest descriptor.
func (img *Image) WriteLayout(ctx context.Context, dir, tag string) (ocispec.Descriptor, error) {
	manifest, others, err := img.encode()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	store, err := oci.NewWithContext(ctx, dir)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("open OCI layout %s: %w", dir, err)
	}
	for _, b := range append(others, manifest) {
		exists, err := store.Exists(ctx, b.desc)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		if exists {
			continue
		}
		if err := store.Push(ctx, b.desc, bytes.NewReader(b.data)); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("write blob %s to %s: %w", b.desc.Digest, dir, err)
		}
	}
	if err := store.Tag(ctx, manifest.desc, tag); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s in %s: %w", tag, dir, err)
	}
	return manifest.desc, nil
}

// Push uploads the image to reference (REGISTRY/REPO:TAG) and returns the
// manifest descriptor.
func (img *Image) Push(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	manifest, others, err := img.encode()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	repo, err := transport.OpenRepository(reference, transport.RemoteOptions{})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, b := range others {
		exists, err := repo.Exists(ctx, b.desc)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("check blob %s in %s: %w", b.desc.Digest, reference, err)
		}
		if exists {
			continue
		}
		if err := repo.Push(ctx, b.desc, bytes.NewReader(b.data)); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("push blob %s to %s: %w", b.desc.Digest, reference, err)
		}
	}
	tag := repo.Reference.Reference
	if tag == "" {
		return ocispec.Descriptor{}, fmt.Errorf("reference %q has no tag; write REGISTRY/REPO:TAG", reference)
	}
	desc := manifest.desc
	desc.Platform = nil
	if err := repo.PushReference(ctx, desc, bytes.NewReader(manifest.data), tag); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push manifest to %s: %w", reference, err)
	}
	return desc, nil
}

// ManifestDigest returns the digest that WriteLayout and Push give the
// image's manifest.
func (img *Image) ManifestDigest() (digest.Digest, error) {
	manifest, _, err := img.encode()
	return manifest.desc.Digest, err
}

// LayerDescriptors returns the descriptors of the compressed layers, as
// the manifest lists them.
func (img *Image) LayerDescriptors() ([]ocispec.Descriptor, error) {
	_, others, err := img.encode()
	if err != nil {
		return nil, err
	}
	var layers []ocispec.Descriptor
	for _, b := range others {
		if b.desc.MediaType == ocispec.MediaTypeImageLayerGzip {
			layers = append(layers, b.desc)
		}
	}
	return layers, nil
}
