package transport

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// Target is the content store that push writes and pull reads: a registry
// repository (*remote.Repository from OpenRepository) or an OCI image
// layout bundle (CreateBundle, OpenBundle). Push and pull use only these
// methods, so registries and bundle files share one code path. A target
// that also lists its tags (a registry, see childTagTarget) gets a child
// tag for each fork child, which listing children reads too.
type Target interface {
	content.Storage
	// Resolve returns the descriptor of the manifest that a tag or a
	// digest names.
	Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error)
	// Tag points reference at the manifest desc.
	Tag(ctx context.Context, desc ocispec.Descriptor, reference string) error
	// Referrers calls fn with the manifests whose subject is desc and whose
	// artifact type is artifactType.
	Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func(referrers []ocispec.Descriptor) error) error
}
