package transport

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
)

// fuzzParent is the parent manifest digest of the fuzz targets.
var fuzzParent = digest.FromString("fuzz parent")

func FuzzParseChildTag(f *testing.F) {
	prefix, err := childTagPrefix(fuzzParent)
	if err != nil {
		f.Fatal(err)
	}
	good, err := childTag(fuzzParent, digest.FromString("child"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{good, prefix, "sha256-" + fuzzParent.Encoded(), "sha256-" + fuzzParent.Encoded() + ".sig", good + "0", strings.ToUpper(good), "latest"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		short, ok := parseChildTag(tag, prefix)
		if !ok {
			return
		}
		if tag != prefix+short || len(short) != childTagDigestLen || strings.Trim(short, "0123456789abcdef") != "" {
			t.Fatalf("parseChildTag(%q) accepted digest part %q", tag, short)
		}
		child := digest.NewDigestFromEncoded(digest.SHA256, short+strings.Repeat("0", 64-childTagDigestLen))
		again, err := childTag(fuzzParent, child)
		if err != nil || again != tag {
			t.Fatalf("childTag of a digest starting with %s = %q, %v; want %q", short, again, err, tag)
		}
	})
}

func FuzzDecodeChildManifest(f *testing.F) {
	commit := &objects.Commit{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	id := objects.Hash(objects.KindCommit, commit.Encode())
	config := ocispec.Descriptor{MediaType: MediaTypeCommit, Digest: digest.FromString("config"), Size: 6}
	layers := []ocispec.Descriptor{layerDescriptor(digest.FromString("layer"), 5, id, 1)}
	subject := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: fuzzParent, Size: 100}
	for _, seed := range []struct {
		subject  *ocispec.Descriptor
		forkName string
	}{{subject, "3"}, {subject, ""}, {nil, "3"}} {
		data, _, err := encodeManifest(id, commit, config, layers, seed.subject, seed.forkName)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"mediaType":"application/vnd.oci.image.index.v1+json"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(data), Size: int64(len(data))}
		child, err := decodeChildManifest(data, desc, fuzzParent)
		if err != nil {
			if !errors.Is(err, errSkipChildTag) {
				t.Fatalf("error %v does not wrap errSkipChildTag", err)
			}
			return
		}
		if child.Digest != desc.Digest || child.Size != desc.Size || child.Annotations[AnnotationForkName] == "" || child.ArtifactType != ArtifactType {
			t.Fatalf("accepted child descriptor %+v", child)
		}
		m, _, err := decodeManifest(data, desc)
		if err != nil || m.Subject == nil || m.Subject.Digest != fuzzParent {
			t.Fatalf("accepted a manifest that is no child of the parent: %v", err)
		}
	})
}
