package transport

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// A bundle is an OCI image layout (oci-layout, index.json and
// blobs/sha256/HEX) in one tar file. index.json lists every manifest the
// bundle holds; the root commit's entry carries its tag in
// org.opencontainers.image.ref.name and the ref it was packed from in
// AnnotationRef.

// AnnotationRef holds, on a bundle's index entry, the full ref name that
// the manifest's commit was packed from, such as refs/heads/base.
const AnnotationRef = "dev.spore.ref"

// maxIndexSize bounds the index.json that OpenBundle reads.
const maxIndexSize = 16 << 20

// BundleWriter writes a bundle. It is a push Target: Push appends blobs to
// the tar, Tag records names, and Close writes index.json and moves the
// file into place, so an interrupted pack leaves no bundle.
type BundleWriter struct {
	path      string
	file      *os.File
	tar       *tar.Writer
	blobs     map[digest.Digest]int64
	manifests []ocispec.Descriptor
	refName   map[digest.Digest]string
	tags      map[digest.Digest]string
}

// bundleTime is the modification time of every tar entry, so the same
// content always yields the same bundle bytes.
var bundleTime = time.Unix(0, 0).UTC()

// CreateBundle starts a bundle that Close will write to path.
func CreateBundle(path string) (*BundleWriter, error) {
	file, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("create bundle %s: %w", path, err)
	}
	w := &BundleWriter{
		path:    path,
		file:    file,
		tar:     tar.NewWriter(file),
		blobs:   make(map[digest.Digest]int64),
		refName: make(map[digest.Digest]string),
		tags:    make(map[digest.Digest]string),
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := w.writeFile(ocispec.ImageLayoutFile, layout); err != nil {
		w.Abort()
		return nil, err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		header := &tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: bundleTime, Format: tar.FormatUSTAR}
		if err := w.tar.WriteHeader(header); err != nil {
			w.Abort()
			return nil, fmt.Errorf("write bundle %s: %w", path, err)
		}
	}
	return w, nil
}

func (w *BundleWriter) writeFile(name string, data []byte) error {
	header := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644, ModTime: bundleTime, Format: tar.FormatUSTAR}
	if err := w.tar.WriteHeader(header); err != nil {
		return fmt.Errorf("write bundle %s: %w", w.path, err)
	}
	if _, err := w.tar.Write(data); err != nil {
		return fmt.Errorf("write bundle %s: %w", w.path, err)
	}
	return nil
}

// Exists reports whether the bundle contains the blob already.
func (w *BundleWriter) Exists(_ context.Context, desc ocispec.Descriptor) (bool, error) {
	_, ok := w.blobs[desc.Digest]
	return ok, nil
}

// Push appends a blob or manifest, after checking its size and digest.
// Manifests are listed in index.json in the order they were pushed.
func (w *BundleWriter) Push(_ context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if _, ok := w.blobs[desc.Digest]; ok {
		return nil
	}
	if err := desc.Digest.Validate(); err != nil || desc.Digest.Algorithm() != digest.SHA256 {
		return fmt.Errorf("invalid blob digest %q: a bundle stores sha256 blobs only", desc.Digest)
	}

	name := "blobs/sha256/" + desc.Digest.Encoded()
	header := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: desc.Size, Mode: 0o644, ModTime: bundleTime, Format: tar.FormatUSTAR}
	if err := w.tar.WriteHeader(header); err != nil {
		return fmt.Errorf("write bundle %s: %w", w.path, err)
	}
	verifier := content.NewVerifyReader(r, desc)
	if _, err := io.Copy(w.tar, verifier); err != nil {
		return fmt.Errorf("write blob %s to bundle %s: %w", desc.Digest, w.path, err)
	}
	if err := verifier.Verify(); err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}

	w.blobs[desc.Digest] = desc.Size
	if desc.MediaType == ocispec.MediaTypeImageManifest {
		w.manifests = append(w.manifests, ocispec.Descriptor{
			MediaType:    desc.MediaType,
			ArtifactType: desc.ArtifactType,
			Digest:       desc.Digest,
			Size:         desc.Size,
			Annotations:  desc.Annotations,
		})
	}
	return nil
}

// Tag names a manifest in index.json.
func (w *BundleWriter) Tag(_ context.Context, desc ocispec.Descriptor, reference string) error {
	if _, ok := w.blobs[desc.Digest]; !ok {
		return fmt.Errorf("tag %q: manifest %s: %w", reference, desc.Digest, errdef.ErrNotFound)
	}
	w.tags[desc.Digest] = reference
	return nil
}

// SetRef records the ref that a manifest's commit was packed from, for
// unpack to recreate.
func (w *BundleWriter) SetRef(manifest digest.Digest, ref string) {
	w.refName[manifest] = ref
}

// Resolve is not supported while a bundle is written.
func (w *BundleWriter) Resolve(context.Context, string) (ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, errdef.ErrUnsupported
}

// Fetch is not supported while a bundle is written.
func (w *BundleWriter) Fetch(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
	return nil, errdef.ErrUnsupported
}

// Referrers is not supported while a bundle is written.
func (w *BundleWriter) Referrers(context.Context, ocispec.Descriptor, string, func([]ocispec.Descriptor) error) error {
	return errdef.ErrUnsupported
}

// Close writes index.json, closes the tar and renames it to its path.
func (w *BundleWriter) Close() error {
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: make([]ocispec.Descriptor, 0, len(w.manifests)),
	}
	for _, desc := range w.manifests {
		annotations := make(map[string]string)
		for k, v := range desc.Annotations {
			annotations[k] = v
		}
		if tag, ok := w.tags[desc.Digest]; ok {
			annotations[ocispec.AnnotationRefName] = tag
		}
		if ref, ok := w.refName[desc.Digest]; ok {
			annotations[AnnotationRef] = ref
		}
		desc.Annotations = annotations
		index.Manifests = append(index.Manifests, desc)
	}
	data, err := json.Marshal(index)
	if err != nil {
		w.Abort()
		return err
	}
	if err := w.writeFile(ocispec.ImageIndexFile, data); err != nil {
		w.Abort()
		return err
	}
	if err := w.tar.Close(); err != nil {
		w.Abort()
		return fmt.Errorf("write bundle %s: %w", w.path, err)
	}
	if err := w.file.Sync(); err != nil {
		w.Abort()
		return fmt.Errorf("write bundle %s: %w", w.path, err)
	}
	if err := w.file.Close(); err != nil {
		os.Remove(w.file.Name())
		return fmt.Errorf("write bundle %s: %w", w.path, err)
	}
	if err := os.Rename(w.file.Name(), w.path); err != nil {
		os.Remove(w.file.Name())
		return fmt.Errorf("write bundle %s: %w", w.path, err)
	}
	return nil
}

// Abort removes the unfinished bundle.
func (w *BundleWriter) Abort() {
	w.file.Close()
	os.Remove(w.file.Name())
}

// BundleReader reads a bundle. It is a pull Target.
type BundleReader struct {
	path  string
	file  *os.File
	blobs map[digest.Digest]bundleEntry
	index ocispec.Index
}

type bundleEntry struct {
	offset, size int64
}

// OpenBundle opens a bundle and reads its table of contents.
func OpenBundle(path string) (*BundleReader, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	b := &BundleReader{path: path, file: file, blobs: make(map[digest.Digest]bundleEntry)}
	if err := b.scan(); err != nil {
		file.Close()
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	return b, nil
}

// scan records where each blob's data starts and reads index.json.
func (b *BundleReader) scan() error {
	counter := &offsetReader{r: b.file}
	tr := tar.NewReader(counter)
	var indexData []byte
	sawLayout := false
	for {
		header, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not a valid tar file: %w", err)
		}
		name := strings.TrimPrefix(header.Name, "./")
		switch {
		case name == ocispec.ImageIndexFile:
			if header.Size > maxIndexSize {
				return fmt.Errorf("index.json of %d bytes is larger than the maximum %d", header.Size, maxIndexSize)
			}
			indexData, err = io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("read index.json: %w", err)
			}
		case name == ocispec.ImageLayoutFile:
			sawLayout = true
		case strings.HasPrefix(name, "blobs/sha256/") && header.Typeflag == tar.TypeReg:
			dgst := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(name, "blobs/sha256/"))
			if err := dgst.Validate(); err != nil {
				return fmt.Errorf("blob file %q: %v", header.Name, err)
			}
			b.blobs[dgst] = bundleEntry{offset: counter.offset, size: header.Size}
		}
	}
	if !sawLayout || indexData == nil {
		return errors.New("not an OCI image layout: oci-layout or index.json is missing (create bundles with spore pack)")
	}
	if err := json.Unmarshal(indexData, &b.index); err != nil {
		return fmt.Errorf("index.json is not valid JSON: %v", err)
	}
	return nil
}

// Close closes the bundle file.
func (b *BundleReader) Close() error {
	return b.file.Close()
}

// Manifests returns the manifests that index.json lists.
func (b *BundleReader) Manifests() []ocispec.Descriptor {
	return b.index.Manifests
}

// Root returns the index entry of the packed commit: the one manifest that
// carries a tag.
func (b *BundleReader) Root() (ocispec.Descriptor, error) {
	var roots []ocispec.Descriptor
	for _, desc := range b.index.Manifests {
		if desc.Annotations[ocispec.AnnotationRefName] != "" {
			roots = append(roots, desc)
		}
	}
	if len(roots) != 1 {
		return ocispec.Descriptor{}, fmt.Errorf("bundle %s has %d tagged manifests, expected 1 (create bundles with spore pack)", b.path, len(roots))
	}
	return roots[0], nil
}

// Exists reports whether the bundle contains the blob.
func (b *BundleReader) Exists(_ context.Context, desc ocispec.Descriptor) (bool, error) {
	entry, ok := b.blobs[desc.Digest]
	return ok && entry.size == desc.Size, nil
}

// Fetch returns a reader of the blob's bytes in the bundle. The caller
// verifies them.
func (b *BundleReader) Fetch(_ context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	entry, ok := b.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w in bundle %s", desc.Digest, errdef.ErrNotFound, b.path)
	}
	if entry.size != desc.Size {
		return nil, fmt.Errorf("blob %s in bundle %s has %d bytes, expected %d", desc.Digest, b.path, entry.size, desc.Size)
	}
	return io.NopCloser(io.NewSectionReader(b.file, entry.offset, entry.size)), nil
}

// Resolve returns the index entry that a tag or a digest names.
func (b *BundleReader) Resolve(_ context.Context, reference string) (ocispec.Descriptor, error) {
	for _, desc := range b.index.Manifests {
		if desc.Digest.String() == reference || desc.Annotations[ocispec.AnnotationRefName] == reference {
			return desc, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("manifest %q: %w in bundle %s", reference, errdef.ErrNotFound, b.path)
}

// Push is not supported: a bundle is read-only.
func (b *BundleReader) Push(context.Context, ocispec.Descriptor, io.Reader) error {
	return errdef.ErrUnsupported
}

// Tag is not supported: a bundle is read-only.
func (b *BundleReader) Tag(context.Context, ocispec.Descriptor, string) error {
	return errdef.ErrUnsupported
}

// Referrers lists the manifests in index.json whose subject is desc.
func (b *BundleReader) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func([]ocispec.Descriptor) error) error {
	var out []ocispec.Descriptor
	for _, entry := range b.index.Manifests {
		if entry.MediaType != ocispec.MediaTypeImageManifest || entry.Size > 4<<20 {
			continue
		}
		data, err := content.FetchAll(ctx, b, entry)
		if err != nil {
			return err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("manifest %s is not valid JSON: %v", entry.Digest, err)
		}
		if m.Subject == nil || m.Subject.Digest != desc.Digest {
			continue
		}
		if artifactType != "" && m.ArtifactType != artifactType {
			continue
		}
		out = append(out, ocispec.Descriptor{MediaType: entry.MediaType, ArtifactType: m.ArtifactType, Digest: entry.Digest, Size: entry.Size, Annotations: m.Annotations})
	}
	return fn(out)
}

// offsetReader tracks the read position of a file, which is where each tar
// entry's data starts after tar.Reader.Next. Seek lets archive/tar skip data
// instead of reading it.
type offsetReader struct {
	r      io.ReadSeeker
	offset int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.offset += int64(n)
	return n, err
}

func (o *offsetReader) Seek(offset int64, whence int) (int64, error) {
	pos, err := o.r.Seek(offset, whence)
	if err == nil {
		o.offset = pos
	}
	return pos, err
}
