package transport

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
)

// Media types and annotations of spore's OCI artifacts.
const (
	// ArtifactType is the artifactType of a spore commit manifest.
	ArtifactType = "application/vnd.spore.commit.v1"
	// MediaTypeCommit is the media type of the config blob: the commit
	// object in canonical encoding (objects.Encode).
	MediaTypeCommit = "application/vnd.spore.commit.v1+bin"
	// MediaTypePack is the media type of a pack layer (see pack.go).
	MediaTypePack = "application/vnd.spore.pack.v1"

	// AnnotationCommit holds the commit ID (blake3, 64 hex digits) on a
	// manifest, and on a layer the ID of the commit whose new objects the
	// layer carries.
	AnnotationCommit = "dev.spore.commit"
	// AnnotationObjects holds the number of objects in a pack layer.
	AnnotationObjects = "dev.spore.objects"
	// AnnotationForkName holds a fork child's name on its manifest, such
	// as "3" for refs/forks/base/3.
	AnnotationForkName = "dev.spore.fork.name"
)

// encodeManifest builds the manifest of a commit. The created annotation is
// the commit's own time, so the same commit always encodes to the same
// manifest bytes.
func encodeManifest(id objects.ID, commit *objects.Commit, config ocispec.Descriptor, layers []ocispec.Descriptor, subject *ocispec.Descriptor, forkName string) ([]byte, ocispec.Descriptor, error) {
	annotations := map[string]string{
		AnnotationCommit:          id.String(),
		ocispec.AnnotationCreated: commit.Time.UTC().Format(time.RFC3339Nano),
	}
	if forkName != "" {
		annotations[AnnotationForkName] = forkName
	}
	manifest := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       config,
		Layers:       layers,
		Subject:      subject,
		Annotations:  annotations,
	}
	if manifest.Layers == nil {
		manifest.Layers = []ocispec.Descriptor{}
	}
	data, err := json.Marshal(manifest)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Digest:       digest.FromBytes(data),
		Size:         int64(len(data)),
		Annotations:  annotations,
	}
	return data, desc, nil
}

// decodeManifest parses a manifest and checks that it describes a spore
// commit, returning the commit ID it names.
func decodeManifest(data []byte, desc ocispec.Descriptor) (*ocispec.Manifest, objects.ID, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, objects.ID{}, fmt.Errorf("manifest %s is not valid JSON: %v", desc.Digest, err)
	}
	if m.MediaType != ocispec.MediaTypeImageManifest || m.ArtifactType != ArtifactType {
		return nil, objects.ID{}, fmt.Errorf("manifest %s is not a spore commit (media type %q, artifact type %q; expected %q and %q)", desc.Digest, m.MediaType, m.ArtifactType, ocispec.MediaTypeImageManifest, ArtifactType)
	}
	if m.Config.MediaType != MediaTypeCommit {
		return nil, objects.ID{}, fmt.Errorf("manifest %s: config media type %q, expected %q", desc.Digest, m.Config.MediaType, MediaTypeCommit)
	}
	id, err := objects.ParseID(m.Annotations[AnnotationCommit])
	if err != nil {
		return nil, objects.ID{}, fmt.Errorf("manifest %s: annotation %s: %w", desc.Digest, AnnotationCommit, err)
	}
	for _, layer := range m.Layers {
		if layer.MediaType != MediaTypePack {
			return nil, objects.ID{}, fmt.Errorf("manifest %s: layer %s has media type %q, expected %q", desc.Digest, layer.Digest, layer.MediaType, MediaTypePack)
		}
		if err := layer.Digest.Validate(); err != nil {
			return nil, objects.ID{}, fmt.Errorf("manifest %s: layer digest %q: %v", desc.Digest, layer.Digest, err)
		}
	}
	return &m, id, nil
}

// layerDescriptor describes a pack layer of the delta of commit.
func layerDescriptor(data digest.Digest, size int64, commit objects.ID, count int) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: MediaTypePack,
		Digest:    data,
		Size:      size,
		Annotations: map[string]string{
			AnnotationCommit:  commit.String(),
			AnnotationObjects: strconv.Itoa(count),
		},
	}
}
