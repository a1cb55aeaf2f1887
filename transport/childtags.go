package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// A registry without the referrers API lists the referrers of a manifest
// in one index under the tag sha256-<hex>, which every push of a referrer
// reads, changes and writes back. Two pushes at the same time can both
// read the old index, and the later write drops the other's child. So
// push also tags each fork child's manifest with a child tag of its own,
//
//	sha256-<parent manifest hex>.child-<first 32 hex digits of the child's manifest digest>
//
// (110 characters, within the 128 that tags allow). A tag PUT replaces
// no other tag, so concurrent pushes cannot lose each other's children.
// Listing takes the union of the referrers and the manifests that child
// tags name.

// childTagMarker separates the parent's part of a child tag from the
// child's part.
const childTagMarker = ".child-"

// childTagDigestLen is the number of hex digits of the child's manifest
// digest in its child tag: 128 bits.
const childTagDigestLen = 32

// childTagTarget is a Target that lists its tags and pushes a manifest
// under a tag in one request: a registry repository
// (*remote.Repository). Push gives each fork child a child tag on such a
// target, and listing children reads them. A bundle is no childTagTarget:
// one process writes it, and its index.json lists every manifest.
type childTagTarget interface {
	Target
	// PushReference pushes a manifest and points the tag reference at it.
	PushReference(ctx context.Context, expected ocispec.Descriptor, content io.Reader, reference string) error
	// Tags calls fn with each page of the repository's tags, in the
	// registry's order, starting after last (empty: from the start).
	Tags(ctx context.Context, last string, fn func(tags []string) error) error
}

// childTagPrefix returns the part of every child tag of parent that comes
// before the child's digest. Only sha256 parents have child tags, because
// a sha512 digest does not fit into a tag with the child's part.
func childTagPrefix(parent digest.Digest) (string, error) {
	if err := parent.Validate(); err != nil || parent.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("parent manifest digest %q is invalid or not sha256, so its children get no child tags", parent)
	}
	return "sha256-" + parent.Encoded() + childTagMarker, nil
}

// childTag returns the child tag of the manifest child under parent.
func childTag(parent, child digest.Digest) (string, error) {
	prefix, err := childTagPrefix(parent)
	if err != nil {
		return "", err
	}
	if err := child.Validate(); err != nil || child.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("child manifest digest %q is invalid or not sha256", child)
	}
	return prefix + child.Encoded()[:childTagDigestLen], nil
}

// parseChildTag returns the child's digest prefix (32 lowercase hex
// digits) from a tag that prefix (from childTagPrefix) starts, and false
// for any other tag, such as the referrers index tag, another tool's
// sha256-<hex>.sig, or a malformed one.
func parseChildTag(tag, prefix string) (string, bool) {
	short, ok := strings.CutPrefix(tag, prefix)
	if !ok || len(short) != childTagDigestLen {
		return "", false
	}
	for _, c := range []byte(short) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return short, true
}

// pushChildManifest pushes a fork child's manifest under its child tag,
// which also adds it to the referrers of its subject.
func pushChildManifest(ctx context.Context, dst childTagTarget, desc ocispec.Descriptor, manifest []byte, subject digest.Digest) error {
	tag, err := childTag(subject, desc.Digest)
	if err != nil {
		return err
	}
	if err := dst.PushReference(ctx, desc, bytes.NewReader(manifest), tag); err != nil {
		return fmt.Errorf("push under child tag %q: %w", tag, err)
	}
	return nil
}

// listTaggedChildren returns the fork children of parent that child tags
// name and whose manifest digest is not in known. It reads every tag of
// the repository, because registries neither sort tags nor honor last
// reliably (Debian's docker-registry 2.8.2 does neither). Each manifest a
// child tag names is fetched and must be a spore commit whose subject is
// parent and which carries a fork name, or it is skipped with a warning.
func listTaggedChildren(ctx context.Context, src childTagTarget, parent ocispec.Descriptor, known []ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	prefix, err := childTagPrefix(parent.Digest)
	if err != nil {
		slog.Debug("no child tags to list", "error", err)
		return nil, nil
	}
	knownShort := make(map[string]bool, len(known))
	for _, d := range known {
		if d.Digest.Validate() == nil && d.Digest.Algorithm() == digest.SHA256 {
			knownShort[d.Digest.Encoded()[:childTagDigestLen]] = true
		}
	}

	var tags []string
	err = src.Tags(ctx, "", func(page []string) error {
		for _, tag := range page {
			if short, ok := parseChildTag(tag, prefix); ok && !knownShort[short] {
				tags = append(tags, tag)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the tags of the repository: %w", withNetworkHint(err))
	}

	var children []ocispec.Descriptor
	for _, tag := range tags {
		child, err := resolveTaggedChild(ctx, src, tag, prefix, parent.Digest)
		if errors.Is(err, errSkipChildTag) {
			slog.Warn("child tag skipped", "tag", tag, "parent", parent.Digest, "reason", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		if child.Digest != "" {
			children = append(children, child)
		}
	}
	return children, nil
}

// errSkipChildTag marks a child tag that names no fork child of the
// parent.
var errSkipChildTag = errors.New("not a fork child of the parent")

// resolveTaggedChild returns the descriptor of the fork child that tag
// names, or an empty descriptor when the tag was deleted since it was
// listed. A tag that names something else gives an error wrapping
// errSkipChildTag.
func resolveTaggedChild(ctx context.Context, src childTagTarget, tag, prefix string, parent digest.Digest) (ocispec.Descriptor, error) {
	desc, err := src.Resolve(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		slog.Debug("child tag deleted while listing", "tag", tag)
		return ocispec.Descriptor{}, nil
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve child tag %q: %w", tag, err)
	}
	short, _ := parseChildTag(tag, prefix)
	if desc.Digest.Validate() != nil || desc.Digest.Algorithm() != digest.SHA256 || desc.Digest.Encoded()[:childTagDigestLen] != short {
		return ocispec.Descriptor{}, fmt.Errorf("it names manifest %s, whose digest does not start with %s: %w", desc.Digest, short, errSkipChildTag)
	}
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return ocispec.Descriptor{}, fmt.Errorf("it names a %s, not an image manifest: %w", desc.MediaType, errSkipChildTag)
	}
	if desc.Size > maxManifestSize {
		return ocispec.Descriptor{}, fmt.Errorf("its manifest %s has %d bytes, more than the maximum %d: %w", desc.Digest, desc.Size, maxManifestSize, errSkipChildTag)
	}
	data, err := content.FetchAll(ctx, src, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("fetch manifest %s of child tag %q: %w", desc.Digest, tag, err)
	}
	return decodeChildManifest(data, desc, parent)
}

// decodeChildManifest checks that data, the manifest desc describes, is a
// spore commit whose subject is parent and which carries a fork name, and
// returns the descriptor that lists it among parent's children. A
// manifest that fails a check gives an error wrapping errSkipChildTag.
func decodeChildManifest(data []byte, desc ocispec.Descriptor, parent digest.Digest) (ocispec.Descriptor, error) {
	m, _, err := decodeManifest(data, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: %w", err, errSkipChildTag)
	}
	if m.Subject == nil || m.Subject.Digest != parent {
		subject := digest.Digest("none")
		if m.Subject != nil {
			subject = m.Subject.Digest
		}
		return ocispec.Descriptor{}, fmt.Errorf("manifest %s has subject %s: %w", desc.Digest, subject, errSkipChildTag)
	}
	if m.Annotations[AnnotationForkName] == "" {
		return ocispec.Descriptor{}, fmt.Errorf("manifest %s has no %s annotation: %w", desc.Digest, AnnotationForkName, errSkipChildTag)
	}
	return ocispec.Descriptor{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: m.ArtifactType,
		Digest:       desc.Digest,
		Size:         desc.Size,
		Annotations:  m.Annotations,
	}, nil
}
