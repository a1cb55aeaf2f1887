package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
	"oras.land/oras-go/v2/registry/remote"
)

// Child is a fork child to push with its parent.
type Child struct {
	// Name is the child's name in its fork, such as "3" for
	// refs/forks/base/3. It becomes the manifest's fork name annotation.
	Name string
	// Commit is the child commit.
	Commit objects.ID
}

// PushOptions control Push.
type PushOptions struct {
	// Tag names the commit's manifest in the target; empty pushes it by
	// digest only.
	Tag string
	// Children are pushed after the commit, each as a manifest whose
	// subject is the manifest of its first parent.
	Children []Child
	// Progress, when set, receives progress events of uploads.
	Progress func(Progress)
	// LayerCache is the directory that keeps the layer descriptors of
	// pushed commits, so later pushes need not pack ancestors again to
	// learn their digests. Empty means transport-cache in the store's
	// directory, or no cache for a store without one.
	LayerCache string
}

// Progress is one progress event of a push or a pull.
type Progress struct {
	// Digest is the blob being moved.
	Digest digest.Digest
	// MediaType is the blob's media type: MediaTypePack for a pack layer.
	MediaType string
	// Objects is the number of objects in a pack layer.
	Objects int
	// Done and Total are bytes moved so far and the blob's size.
	Done, Total int64
	// Skipped is set when the blob was already there.
	Skipped bool
}

// Counts are the transfer counts of a push or a pull.
type Counts struct {
	// Bytes is the number of blob and manifest bytes sent or received.
	Bytes int64 `json:"bytes"`
	// Blobs counts layer and config blobs sent or received.
	Blobs int `json:"blobs"`
	// BlobsSkipped counts blobs that were already there and not moved.
	BlobsSkipped int `json:"blobs_skipped"`
	// LayerBytes is the part of Bytes that pack layers took.
	LayerBytes int64 `json:"layer_bytes"`
	// Manifests counts manifests sent or received.
	Manifests int `json:"manifests"`
}

func (c *Counts) add(o Counts) {
	c.Bytes += o.Bytes
	c.Blobs += o.Blobs
	c.BlobsSkipped += o.BlobsSkipped
	c.LayerBytes += o.LayerBytes
	c.Manifests += o.Manifests
}

// PushedCommit describes one pushed commit.
type PushedCommit struct {
	Name     string        `json:"name,omitempty"`
	Commit   objects.ID    `json:"commit"`
	Manifest digest.Digest `json:"manifest"`
	// Counts are the uploads that this commit added to the push.
	Counts
}

// PushResult is the summary of Push.
type PushResult struct {
	PushedCommit
	Tag      string         `json:"tag,omitempty"`
	Children []PushedCommit `json:"children,omitempty"`
	// Total sums the commit and its children.
	Total Counts `json:"total"`
	// LayersPacked counts the layers packed from the store; layers whose
	// descriptors came from the layer cache and that the target had
	// already were not packed.
	LayersPacked int `json:"layers_packed"`
}

// Push uploads commit id, its ancestors and opts.Children to dst. Blobs
// that dst already has are skipped. The tag, if any, is written after
// every blob and manifest of the commit is in place, so an interrupted
// push leaves no tag that names missing content.
func Push(ctx context.Context, store *objects.Store, dst Target, id objects.ID, opts PushOptions) (*PushResult, error) {
	cacheDir := opts.LayerCache
	if cacheDir == "" {
		cacheDir = defaultLayerCacheDir(store)
	}
	b, err := newBuilder(store, cacheDir)
	if err != nil {
		return nil, err
	}
	defer b.Close()

	p := &pusher{
		ctx:      ctx,
		dst:      dst,
		builder:  b,
		progress: opts.Progress,
		present:  make(map[digest.Digest]bool),
		sent:     make(map[digest.Digest]bool),
		pushed:   make(map[string]bool),
	}

	root, counts, err := p.buildWhileUploading(id)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", id.Short(), withNetworkHint(err))
	}
	c, err := p.pushCommit(root, "")
	if err != nil {
		return nil, err
	}
	counts.add(c)
	result := &PushResult{
		PushedCommit: PushedCommit{Commit: id, Manifest: root.desc.Digest, Counts: counts},
		Tag:          opts.Tag,
		Total:        counts,
	}

	if opts.Tag != "" {
		if err := dst.Tag(ctx, root.desc, opts.Tag); err != nil {
			return nil, fmt.Errorf("tag manifest %s as %q: %w", root.desc.Digest, opts.Tag, err)
		}
		slog.Debug("tagged", "tag", opts.Tag, "manifest", root.desc.Digest, "commit", id)
	}

	for _, child := range opts.Children {
		bc, counts, err := p.buildWhileUploading(child.Commit)
		if err != nil {
			return nil, fmt.Errorf("push child %s (%s): %w", child.Name, child.Commit.Short(), err)
		}
		c, err := p.pushCommit(bc, child.Name)
		if err != nil {
			return nil, fmt.Errorf("push child %s: %w", child.Name, err)
		}
		counts.add(c)
		_, desc, err := b.manifest(bc, child.Name)
		if err != nil {
			return nil, err
		}
		result.Children = append(result.Children, PushedCommit{Name: child.Name, Commit: child.Commit, Manifest: desc.Digest, Counts: counts})
		result.Total.add(counts)
	}
	result.LayersPacked = b.packed
	return result, nil
}

// pusher uploads built commits and remembers what the target has.
type pusher struct {
	ctx      context.Context
	dst      Target
	builder  *builder
	progress func(Progress)
	// present holds blobs known to be in the target.
	present map[digest.Digest]bool
	// sent holds blobs this push uploaded, which later commits neither
	// upload nor count as skipped.
	sent map[digest.Digest]bool
	// pushed holds the commits (and fork names) whose manifests this push
	// has sent.
	pushed map[string]bool
}

// buildWhileUploading builds the layers of commit id and its ancestors
// while a second goroutine uploads each layer as soon as it is written, so
// reading the store and sending to the target overlap.
func (p *pusher) buildWhileUploading(id objects.ID) (*builtCommit, Counts, error) {
	var counts Counts
	var uploadErr error
	layers := make(chan *builtLayer, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for layer := range layers {
			if uploadErr != nil {
				continue
			}
			c, err := p.pushBlob(layer.desc, p.openLayer(layer))
			if err != nil {
				uploadErr = fmt.Errorf("upload layer %s of commit %s: %w", layer.desc.Digest, layer.desc.Annotations[AnnotationCommit], err)
				continue
			}
			c.LayerBytes = c.Bytes
			counts.add(c)
		}
	}()

	p.builder.onLayer = func(layer *builtLayer) { layers <- layer }
	bc, err := p.builder.build(id)
	p.builder.onLayer = nil
	close(layers)
	<-done

	if uploadErr != nil {
		return nil, counts, uploadErr
	}
	if err != nil {
		return nil, counts, err
	}
	return bc, counts, nil
}

// openLayer returns a function that opens a layer's file, packing the layer
// first when only its cached descriptor is known.
func (p *pusher) openLayer(layer *builtLayer) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		path, err := p.builder.layerPath(layer)
		if err != nil {
			return nil, err
		}
		return os.Open(path)
	}
}

// pushCommit uploads bc's ancestors, then bc's layers, config and manifest.
// Manifests are always sent, even when present, because a registry
// without the referrers API indexes a child only when its manifest is
// pushed, and a push that was interrupted may have skipped that step.
func (p *pusher) pushCommit(bc *builtCommit, forkName string) (Counts, error) {
	var counts Counts
	key := bc.id.String() + "\x00" + forkName
	if p.pushed[key] {
		return counts, nil
	}

	for _, parent := range bc.parents {
		c, err := p.pushCommit(parent, "")
		if err != nil {
			return counts, err
		}
		counts.add(c)
	}

	for _, layer := range bc.layers {
		c, err := p.pushBlob(layer.desc, p.openLayer(layer))
		if err != nil {
			return counts, fmt.Errorf("upload layer %s of commit %s: %w", layer.desc.Digest, bc.id.Short(), err)
		}
		c.LayerBytes = c.Bytes
		counts.add(c)
	}
	c, err := p.pushBlob(bc.cfgDesc, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(bc.config)), nil })
	if err != nil {
		return counts, fmt.Errorf("upload commit %s: %w", bc.id.Short(), err)
	}
	counts.add(c)

	manifest, desc := bc.manifest, bc.desc
	if forkName != "" {
		manifest, desc, err = p.builder.manifest(bc, forkName)
		if err != nil {
			return counts, err
		}
	}
	if err := p.pushManifest(bc, manifest, desc, forkName); err != nil {
		return counts, fmt.Errorf("upload manifest %s of commit %s: %w", desc.Digest, bc.id.Short(), err)
	}
	slog.Debug("pushed manifest", "manifest", desc.Digest, "commit", bc.id, "fork_name", forkName)
	counts.Bytes += desc.Size
	counts.Manifests++
	p.pushed[key] = true
	return counts, nil
}

// pushManifest sends a commit's manifest: a fork child's under its child
// tag when the target is a registry, any other by digest. A registry
// without the referrers API also gets the manifest added to its subject's
// referrers index.
func (p *pusher) pushManifest(bc *builtCommit, manifest []byte, desc ocispec.Descriptor, forkName string) error {
	var err error
	tagged, ok := p.dst.(childTagTarget)
	if ok && forkName != "" && len(bc.parents) > 0 {
		err = pushChildManifest(p.ctx, tagged, desc, manifest, bc.parents[0].desc.Digest)
	} else {
		err = p.dst.Push(p.ctx, desc, bytes.NewReader(manifest))
	}

	// oras-go deletes the referrers index it replaced after it wrote the
	// new one. That delete can fail, for example with "not found" when another
	// push replaced the same index at the same time. The manifest and the
	// new index are in place then, so the push goes on.
	var referrersErr *remote.ReferrersError
	if errors.As(err, &referrersErr) && referrersErr.IsReferrersIndexDelete() {
		slog.Info("old referrers index not deleted", "manifest", desc.Digest, "commit", bc.id, "error", err)
		return nil
	}
	return err
}

// pushBlob uploads one blob unless the target has it.
func (p *pusher) pushBlob(desc ocispec.Descriptor, open func() (io.ReadCloser, error)) (Counts, error) {
	var counts Counts
	if p.sent[desc.Digest] {
		return counts, nil
	}
	objectsCount := objectCount(desc)
	if !p.present[desc.Digest] {
		exists, err := p.dst.Exists(p.ctx, desc)
		if err != nil {
			return counts, err
		}
		p.present[desc.Digest] = exists
		if !exists {
			r, err := open()
			if err != nil {
				return counts, err
			}
			defer r.Close()
			reader := &progressReader{r: r, event: Progress{Digest: desc.Digest, MediaType: desc.MediaType, Objects: objectsCount, Total: desc.Size}, report: p.progress}
			if err := p.dst.Push(p.ctx, desc, reader); err != nil {
				return counts, err
			}
			slog.Debug("pushed blob", "digest", desc.Digest, "size", desc.Size, "media_type", desc.MediaType)
			p.present[desc.Digest] = true
			p.sent[desc.Digest] = true
			counts.Bytes += desc.Size
			counts.Blobs++
			return counts, nil
		}
	}
	if p.progress != nil {
		p.progress(Progress{Digest: desc.Digest, MediaType: desc.MediaType, Objects: objectsCount, Done: desc.Size, Total: desc.Size, Skipped: true})
	}
	counts.BlobsSkipped++
	return counts, nil
}
