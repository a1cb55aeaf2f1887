package transport

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
)

// LayerTarget is the size of object encodings after which a pack layer is
// closed and the next one started. A layer grows past it by at most one
// object, and a retry after a failed upload repeats at most one layer.
const LayerTarget = 16 << 20

// Layering: a commit's manifest lists the layers of its parents first, in
// parent order and each layer once. Then come the layers of its delta,
// which holds the objects of its closure that no parent's closure
// contains. The delta is in reverse closure order, so chunks come first and
// the commit object last. The parents are part of the commit, so the delta
// depends only on the commit and the same commit always yields the same
// layers. A child shares every layer of its parent and uploads only its
// delta.

// builtLayer is one pack layer, written to a temporary file. Its path is
// empty while only its descriptor is known, from the layer cache.
type builtLayer struct {
	desc ocispec.Descriptor
	path string
}

// builtCommit is a commit with its layers and manifest, ready to upload.
type builtCommit struct {
	id      objects.ID
	commit  *objects.Commit
	config  []byte
	cfgDesc ocispec.Descriptor
	parents []*builtCommit
	// layers lists every layer of the manifest, ancestors' layers first.
	layers []*builtLayer
	// own is the number of layers at the end of layers that hold this
	// commit's delta.
	own      int
	closure  map[objects.ID]struct{}
	manifest []byte
	desc     ocispec.Descriptor
}

// builder turns commits into layers and manifests, once per commit.
type builder struct {
	store *objects.Store
	dir   string
	cache layerCache
	built map[objects.ID]*builtCommit
	// onLayer, when set, receives each layer as soon as it is written.
	onLayer func(*builtLayer)
	// packed counts the layers written from the store.
	packed int
}

// newBuilder returns a builder that writes layers to a temporary
// directory and keeps their descriptors in cacheDir ("" keeps none).
func newBuilder(store *objects.Store, cacheDir string) (*builder, error) {
	dir, err := os.MkdirTemp("", "spore-push-")
	if err != nil {
		return nil, fmt.Errorf("create a directory for pack layers: %w", err)
	}
	return &builder{store: store, dir: dir, cache: layerCache{dir: cacheDir}, built: make(map[objects.ID]*builtCommit)}, nil
}

// Close removes the layer files.
func (b *builder) Close() error {
	return os.RemoveAll(b.dir)
}

// build returns the layers and manifest of commit id, building its
// ancestors first.
func (b *builder) build(id objects.ID) (*builtCommit, error) {
	if bc, ok := b.built[id]; ok {
		return bc, nil
	}

	commit, err := b.store.GetCommit(id)
	if err != nil {
		return nil, err
	}
	bc := &builtCommit{id: id, commit: commit}
	bc.config = objects.Encode(objects.KindCommit, commit.Encode())
	bc.cfgDesc = ocispec.Descriptor{
		MediaType: MediaTypeCommit,
		Digest:    digest.FromBytes(bc.config),
		Size:      int64(len(bc.config)),
	}

	// Parents first: their layers come first in the manifest, and their
	// closures are what this commit does not need to send again.
	inherited := make(map[digest.Digest]bool)
	for _, parentID := range commit.Parents {
		parent, err := b.build(parentID)
		if err != nil {
			return nil, fmt.Errorf("commit %s: parent: %w", id.Short(), err)
		}
		bc.parents = append(bc.parents, parent)
		for _, layer := range parent.layers {
			if !inherited[layer.desc.Digest] {
				inherited[layer.desc.Digest] = true
				bc.layers = append(bc.layers, layer)
			}
		}
	}

	own, err := b.ownLayers(bc)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", id.Short(), err)
	}
	bc.layers = append(bc.layers, own...)
	bc.own = len(own)

	bc.manifest, bc.desc, err = b.manifest(bc, "")
	if err != nil {
		return nil, err
	}
	b.built[id] = bc
	return bc, nil
}

// manifest encodes bc's manifest, with a fork name annotation when forkName
// is set.
func (b *builder) manifest(bc *builtCommit, forkName string) ([]byte, ocispec.Descriptor, error) {
	layers := make([]ocispec.Descriptor, len(bc.layers))
	for i, layer := range bc.layers {
		layers[i] = layer.desc
	}
	var subject *ocispec.Descriptor
	if len(bc.parents) > 0 {
		subject = &bc.parents[0].desc
	}
	return encodeManifest(bc.id, bc.commit, bc.cfgDesc, layers, subject, forkName)
}

// ownLayers returns the layers of bc's delta: their descriptors from the
// cache, or layers packed from the store.
func (b *builder) ownLayers(bc *builtCommit) ([]*builtLayer, error) {
	if descs, ok := b.cache.load(bc.id); ok {
		own := make([]*builtLayer, len(descs))
		for i, desc := range descs {
			own[i] = &builtLayer{desc: desc}
		}
		return own, nil
	}

	delta, err := b.delta(bc)
	if err != nil {
		return nil, err
	}
	own, err := b.writeLayers(bc.id, delta)
	if err != nil {
		return nil, err
	}
	descs := make([]ocispec.Descriptor, len(own))
	for i, layer := range own {
		descs[i] = layer.desc
	}
	b.cache.save(bc.id, descs)
	return own, nil
}

// layerPath returns the file of a layer, packing the layers of its commit
// again when only their cached descriptors are known. The packed layers
// must match the cached descriptors.
func (b *builder) layerPath(layer *builtLayer) (string, error) {
	if layer.path != "" {
		return layer.path, nil
	}
	owner, err := objects.ParseID(layer.desc.Annotations[AnnotationCommit])
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", layer.desc.Digest, err)
	}
	bc, ok := b.built[owner]
	if !ok {
		return "", fmt.Errorf("layer %s belongs to commit %s, which this push did not build", layer.desc.Digest, owner.Short())
	}

	delta, err := b.delta(bc)
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", owner.Short(), err)
	}
	onLayer := b.onLayer
	b.onLayer = nil
	packed, err := b.writeLayers(owner, delta)
	b.onLayer = onLayer
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", owner.Short(), err)
	}
	own := bc.layers[len(bc.layers)-bc.own:]
	if len(packed) != len(own) {
		return "", fmt.Errorf("commit %s packs into %d layers, but the layer cache in %s lists %d (delete that directory)", owner.Short(), len(packed), b.cache.dir, len(own))
	}
	for i := range own {
		if packed[i].desc.Digest != own[i].desc.Digest || packed[i].desc.Size != own[i].desc.Size {
			return "", fmt.Errorf("commit %s: layer %d packs to %s, but the layer cache in %s lists %s (delete that directory)", owner.Short(), i, packed[i].desc.Digest, b.cache.dir, own[i].desc.Digest)
		}
		own[i].path = packed[i].path
	}
	return layer.path, nil
}

// closureOf returns the set of objects that bc reaches.
func (b *builder) closureOf(bc *builtCommit) (map[objects.ID]struct{}, error) {
	if bc.closure != nil {
		return bc.closure, nil
	}
	closure := make(map[objects.ID]struct{})
	err := b.store.Closure([]objects.ID{bc.id}, func(l objects.Link) error {
		closure[l.ID] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	bc.closure = closure
	return closure, nil
}

// delta returns the objects of bc's closure that none of its parents'
// closures contains, in reverse closure order. It also records bc's closure
// for its children.
func (b *builder) delta(bc *builtCommit) ([]objects.ID, error) {
	parents := make([]map[objects.ID]struct{}, len(bc.parents))
	for i, parent := range bc.parents {
		closure, err := b.closureOf(parent)
		if err != nil {
			return nil, err
		}
		parents[i] = closure
	}

	closure := make(map[objects.ID]struct{})
	var order []objects.ID
	err := b.store.Closure([]objects.ID{bc.id}, func(l objects.Link) error {
		closure[l.ID] = struct{}{}
		for _, parent := range parents {
			if _, ok := parent[l.ID]; ok {
				return nil
			}
		}
		order = append(order, l.ID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	bc.closure = closure
	for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
		order[i], order[j] = order[j], order[i]
	}
	return order, nil
}

// writeLayers packs ids into layers of about LayerTarget bytes each.
func (b *builder) writeLayers(commit objects.ID, ids []objects.ID) ([]*builtLayer, error) {
	var layers []*builtLayer
	for len(ids) > 0 {
		layer, used, err := b.writeLayer(commit, ids)
		if err != nil {
			return nil, err
		}
		layers = append(layers, layer)
		ids = ids[used:]
		if b.onLayer != nil {
			b.onLayer(layer)
		}
	}
	return layers, nil
}

// writeLayer packs objects from the front of ids until the layer reaches
// LayerTarget and returns how many it took.
func (b *builder) writeLayer(commit objects.ID, ids []objects.ID) (*builtLayer, int, error) {
	f, err := os.CreateTemp(b.dir, "layer-")
	if err != nil {
		return nil, 0, fmt.Errorf("create a pack layer file: %w", err)
	}
	defer f.Close()

	hash := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(f, hash)}
	pack, err := newPackWriter(counter)
	if err != nil {
		return nil, 0, fmt.Errorf("write pack layer: %w", err)
	}
	used, encoded := 0, 0
	for used < len(ids) && encoded < LayerTarget {
		raw, err := b.store.GetRaw(ids[used])
		if err != nil {
			return nil, 0, err
		}
		if err := pack.add(ids[used], raw); err != nil {
			return nil, 0, fmt.Errorf("write pack layer: %w", err)
		}
		encoded += len(raw)
		used++
	}
	if err := f.Close(); err != nil {
		return nil, 0, fmt.Errorf("write pack layer: %w", err)
	}

	b.packed++
	dgst := digest.NewDigestFromBytes(digest.SHA256, hash.Sum(nil))
	return &builtLayer{
		desc: layerDescriptor(dgst, counter.n, commit, used),
		path: f.Name(),
	}, used, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
