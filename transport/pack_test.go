package transport

import (
	"bytes"
	"errors"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
)

func encodePack(t testing.TB, payloads ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	p, err := newPackWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, payload := range payloads {
		if err := p.add(objects.Hash(objects.KindChunk, payload), objects.Encode(objects.KindChunk, payload)); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestPackRoundTrip(t *testing.T) {
	zeros := make([]byte, 8192)
	random := memoryImage(8192, 3)
	data := encodePack(t, []byte("small"), zeros, random)

	got, err := decodePack(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("decoded %d objects, want 3", len(got))
	}
	for i, payload := range [][]byte{[]byte("small"), zeros, random} {
		if !bytes.Equal(got[i].Raw, objects.Encode(objects.KindChunk, payload)) {
			t.Errorf("object %d differs after the round trip", i)
		}
	}
	if len(data) > len(random)+len(zeros)/2 {
		t.Errorf("pack of %d bytes: zero chunk was not compressed", len(data))
	}
}

func TestPackDetectsCorruption(t *testing.T) {
	data := encodePack(t, bytes.Repeat([]byte("abc"), 1000))
	data[len(data)-10] ^= 1
	_, err := decodePack(data)
	if !errors.Is(err, objects.ErrCorrupt) {
		t.Errorf("error = %v, want a corrupt object", err)
	}

	_, err = decodePack([]byte("NOTAPACK"))
	if !errors.Is(err, ErrPackCorrupt) {
		t.Errorf("bad magic error = %v", err)
	}

	good := encodePack(t, []byte("one"), []byte("two"))
	_, err = decodePack(good[:len(good)-2])
	if !errors.Is(err, ErrPackCorrupt) {
		t.Errorf("truncated pack error = %v", err)
	}
}

func FuzzDecodePack(f *testing.F) {
	f.Add(encodePack(f, []byte("one"), make([]byte, 4096)))
	f.Add([]byte(packMagic))
	f.Add([]byte(packMagic + "\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := decodePack(data)
		if err != nil {
			return
		}
		for _, o := range objs {
			if _, _, err := objects.DecodeVerified(o.ID, o.Raw); err != nil {
				t.Fatalf("decodePack returned an unverified object: %v", err)
			}
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.spore.commit.v1","config":{"mediaType":"application/vnd.spore.commit.v1+bin","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[],"annotations":{"dev.spore.commit":"0000000000000000000000000000000000000000000000000000000000000000"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := decodeManifest(data, emptyDescriptor)
		if err == nil && m.ArtifactType != ArtifactType {
			t.Fatalf("accepted artifact type %q", m.ArtifactType)
		}
	})
}

var emptyDescriptor = ocispec.Descriptor{}
