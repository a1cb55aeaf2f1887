package rootfs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// applyLayers fetches each layer of img and applies it to the tree. The
// compressed bytes are checked against the manifest digest and the tar
// stream against the config's diff ID; a layer that fails either check
// fails the build, and the caller discards the build dir.
func (src *source) applyLayers(ctx context.Context, img *resolvedImage, a *applier, onLayer func(i int, desc ocispec.Descriptor)) error {
	for i, desc := range img.manifest.Layers {
		if err := src.applyLayer(ctx, desc, img.config.RootFS.DiffIDs[i], a, i+1); err != nil {
			return fmt.Errorf("layer %d (%s) of manifest %s: %w", i+1, desc.Digest, img.manifestDesc.Digest, err)
		}
		if onLayer != nil {
			onLayer(i, desc)
		}
	}
	return nil
}

func (src *source) applyLayer(ctx context.Context, desc ocispec.Descriptor, diffID digest.Digest, a *applier, layer int) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("invalid layer digest: %w", err)
	}
	if desc.Digest.Algorithm() != digest.SHA256 || diffID.Algorithm() != digest.SHA256 {
		return fmt.Errorf("layer digest %s or diff ID %s is not sha256, the only algorithm spore checks", desc.Digest, diffID)
	}
	rc, err := src.target.Fetch(ctx, desc)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	defer rc.Close()

	// Decompress and hash in a goroutine while this one parses the tar
	// stream and writes files, as tar -xz runs gzip in a second process.
	blobHash := sha256.New()
	diffHash := sha256.New()
	counted := &countingReader{r: io.TeeReader(rc, blobHash)}
	pr, pw := io.Pipe()
	decoded := make(chan error, 1)
	go func() {
		decoded <- decodeLayer(desc.MediaType, counted, io.MultiWriter(pw, diffHash))
		pw.Close()
	}()

	err = a.applyLayer(pr, layer)
	if err == nil {
		// Read what follows the tar end marker too: the digests cover it.
		_, err = io.Copy(io.Discard, pr)
	}
	pr.CloseWithError(errLayerDone)
	if decodeErr := <-decoded; decodeErr != nil && !errors.Is(decodeErr, errLayerDone) && err == nil {
		err = decodeErr
	}
	if err != nil {
		return err
	}

	if got := digestOf(blobHash); got != desc.Digest {
		return fmt.Errorf("digest mismatch: the content is %s but the manifest names %s (the registry or layout is corrupt or was tampered with)", got, desc.Digest)
	}
	if counted.n != desc.Size {
		return fmt.Errorf("size mismatch: the content is %d bytes but the manifest gives %d", counted.n, desc.Size)
	}
	if got := digestOf(diffHash); got != diffID {
		return fmt.Errorf("diff ID mismatch: the uncompressed layer is %s but the image config names %s", got, diffID)
	}
	return nil
}

// errLayerDone stops the decoding goroutine when the tar parser stops
// reading, after the end of the stream or on an error.
var errLayerDone = errors.New("layer reading stopped")

// decodeLayer writes the tar stream of a compressed layer to w.
func decodeLayer(mediaType string, r io.Reader, w io.Writer) error {
	tarStream, closeStream, err := decompress(mediaType, r)
	if err != nil {
		return err
	}
	defer closeStream()
	if _, err := io.Copy(w, tarStream); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}

	// Hash the compressed bytes after the end of the compressed stream.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	return nil
}

// decompress returns the tar stream of a layer with mediaType.
func decompress(mediaType string, r io.Reader) (io.Reader, func(), error) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerNonDistributable: //nolint:staticcheck // still served by registries
		return r, func() {}, nil
	case ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerNonDistributableGzip, dockerLayerGzip: //nolint:staticcheck
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("read gzip layer: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("read zstd layer: %w", err)
		}
		return zr, zr.Close, nil
	}
	return nil, nil, fmt.Errorf("unsupported layer media type %q (spore reads tar, tar+gzip and tar+zstd layers)", mediaType)
}

func digestOf(h hash.Hash) digest.Digest {
	return digest.NewDigest(digest.SHA256, h)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
