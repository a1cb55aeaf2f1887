package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// importBatchBytes bounds the object bytes that pull verifies and stores
// in one request to the store.
const importBatchBytes = 8 << 20

// maxManifestSize bounds the manifests that pull reads.
const maxManifestSize = 4 << 20

// PullOptions control Pull.
type PullOptions struct {
	// Child selects the fork child of this name among the referrers of the
	// pulled manifest, and pulls it instead.
	Child string
	// Ref is the full ref name to create for the pulled commit; empty
	// creates none. An existing ref is an error unless it already points
	// to the commit.
	Ref string
	// Children also pulls every fork child among the referrers of the
	// pulled manifest. It cannot be combined with Child.
	Children bool
	// ChildRefPrefix, with Children, names the ref of each child:
	// ChildRefPrefix + the child's name, such as refs/forks/base/3. Empty
	// creates no child refs.
	ChildRefPrefix string
	// Progress, when set, receives progress events of downloads.
	Progress func(Progress)
}

// PullResult is the summary of Pull.
type PullResult struct {
	Commit   objects.ID    `json:"commit"`
	Manifest digest.Digest `json:"manifest"`
	Child    string        `json:"child,omitempty"`
	Ref      string        `json:"ref,omitempty"`
	// Objects counts the objects read from layers and stored after
	// verification, including ones the store already had.
	Objects int `json:"objects"`
	Counts
	// Children are the fork children pulled with PullOptions.Children.
	Children []*PullResult `json:"children,omitempty"`
}

// Pull fetches the commit that reference (a tag or a digest) names in src,
// or with opts.Child one of its fork children, into store. Only the layers
// of that commit's manifest are fetched, and a layer whose commit the
// store already has is skipped. Every object is verified against its
// blake3 ID before it is stored, the commit's closure is checked to be
// complete, and only then is opts.Ref written. A failed pull writes no ref.
func Pull(ctx context.Context, store *objects.Store, r *refs.Refs, src Target, reference string, opts PullOptions) (*PullResult, error) {
	if opts.Child != "" && opts.Children {
		return nil, errors.New("pull either one child or all children, not both")
	}
	if opts.Ref != "" {
		if err := refs.ValidateName(opts.Ref); err != nil {
			return nil, err
		}
	}

	desc, err := src.Resolve(ctx, reference)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return nil, fmt.Errorf("%q not found: %w (check the tag or digest)", reference, err)
		}
		return nil, fmt.Errorf("resolve %q: %w", reference, withNetworkHint(err))
	}

	var updates []refs.Update
	result, err := pullManifest(ctx, store, src, desc, opts)
	if err != nil {
		return nil, err
	}
	if opts.Ref != "" {
		updates = append(updates, refs.Update{Name: opts.Ref, New: result.Commit, Reason: "pull " + reference})
		result.Ref = opts.Ref
	}

	if opts.Children {
		children, err := listChildren(ctx, src, desc)
		if err != nil {
			return nil, err
		}
		for _, child := range children {
			childOpts := PullOptions{Progress: opts.Progress}
			childResult, err := pullManifest(ctx, store, src, child, childOpts)
			if err != nil {
				return nil, fmt.Errorf("child %s: %w", child.Annotations[AnnotationForkName], err)
			}
			childResult.Child = child.Annotations[AnnotationForkName]
			if opts.ChildRefPrefix != "" {
				childResult.Ref = opts.ChildRefPrefix + childResult.Child
				if err := refs.ValidateName(childResult.Ref); err != nil {
					return nil, fmt.Errorf("child %q: %w", childResult.Child, err)
				}
				updates = append(updates, refs.Update{Name: childResult.Ref, New: childResult.Commit, Reason: "pull " + reference})
			}
			result.Children = append(result.Children, childResult)
		}
	}

	if err := createRefs(r, updates); err != nil {
		return nil, err
	}
	slog.Debug("pulled", "commit", result.Commit, "manifest", result.Manifest, "ref", opts.Ref, "children", len(result.Children))
	return result, nil
}

// pullManifest imports the commit of the manifest desc, or with opts.Child
// the commit of that fork child, and checks that its closure is complete.
// It writes no ref.
func pullManifest(ctx context.Context, store *objects.Store, src Target, desc ocispec.Descriptor, opts PullOptions) (*PullResult, error) {
	manifest, id, err := fetchManifest(ctx, src, desc)
	if err != nil {
		return nil, err
	}
	result := &PullResult{}
	result.Bytes += desc.Size
	result.Manifests++

	if opts.Child != "" {
		desc, err = findChild(ctx, src, desc, opts.Child)
		if err != nil {
			return nil, err
		}
		manifest, id, err = fetchManifest(ctx, src, desc)
		if err != nil {
			return nil, err
		}
		result.Child = opts.Child
		result.Bytes += desc.Size
		result.Manifests++
	}
	result.Commit, result.Manifest = id, desc.Digest

	config, err := content.FetchAll(ctx, src, manifest.Config)
	if err != nil {
		return nil, fmt.Errorf("fetch commit %s (config %s): %w", id.Short(), manifest.Config.Digest, err)
	}
	kind, _, err := objects.DecodeVerified(id, config)
	if err != nil {
		return nil, fmt.Errorf("config %s of manifest %s: %w", manifest.Config.Digest, desc.Digest, err)
	}
	if kind != objects.KindCommit {
		return nil, fmt.Errorf("config %s of manifest %s is a %s, not a commit", manifest.Config.Digest, desc.Digest, kind)
	}
	result.Bytes += manifest.Config.Size
	result.Blobs++

	imp := &importer{ctx: ctx, store: store, src: src, progress: opts.Progress, result: result}
	for _, layer := range manifest.Layers {
		if err := imp.layer(layer); err != nil {
			return nil, err
		}
	}
	if err := store.PutRaw(id, config); err != nil {
		return nil, err
	}
	if err := checkClosure(store, id); err != nil {
		return nil, fmt.Errorf("pulled commit %s from manifest %s is incomplete: %w", id.Short(), desc.Digest, err)
	}

	return result, nil
}

// fetchManifest fetches and checks a spore commit manifest.
func fetchManifest(ctx context.Context, src Target, desc ocispec.Descriptor) (*ocispec.Manifest, objects.ID, error) {
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, objects.ID{}, fmt.Errorf("%s is a %s, not a spore commit manifest (%s)", desc.Digest, desc.MediaType, ocispec.MediaTypeImageManifest)
	}
	if desc.Size > maxManifestSize {
		return nil, objects.ID{}, fmt.Errorf("manifest %s of %d bytes is larger than the maximum 4 MiB", desc.Digest, desc.Size)
	}
	data, err := content.FetchAll(ctx, src, desc)
	if err != nil {
		return nil, objects.ID{}, fmt.Errorf("fetch manifest %s: %w", desc.Digest, err)
	}
	return decodeManifest(data, desc)
}

// listChildren returns the fork children of parent, sorted by name: the
// referrers of parent that carry a fork name and, on a registry, the
// manifests that parent's child tags name (see childtags.go).
func listChildren(ctx context.Context, src Target, parent ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	var children []ocispec.Descriptor
	err := src.Referrers(ctx, parent, ArtifactType, func(referrers []ocispec.Descriptor) error {
		for _, d := range referrers {
			if d.Annotations[AnnotationForkName] != "" {
				children = append(children, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list fork children of manifest %s: %w", parent.Digest, err)
	}
	if tagged, ok := src.(childTagTarget); ok {
		// The referrers index was readable, so a failed tag listing most
		// likely means the registry does not list tags. The index alone
		// still has every child that no concurrent push dropped from it.
		more, err := listTaggedChildren(ctx, tagged, parent, children)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("list fork children of manifest %s: %w", parent.Digest, err)
			}
			slog.Warn("listing tags failed, so fork children are taken from the referrers index alone; a child whose push raced with another may be missing",
				"parent", parent.Digest, "error", err)
		}
		children = append(children, more...)
	}
	sort.Slice(children, func(i, j int) bool {
		a, b := children[i].Annotations[AnnotationForkName], children[j].Annotations[AnnotationForkName]
		if a != b {
			return a < b
		}
		return children[i].Digest < children[j].Digest
	})
	return children, nil
}

// findChild returns the fork child of parent whose fork name is name.
func findChild(ctx context.Context, src Target, parent ocispec.Descriptor, name string) (ocispec.Descriptor, error) {
	children, err := listChildren(ctx, src, parent)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var match []ocispec.Descriptor
	var names []string
	for _, d := range children {
		childName := d.Annotations[AnnotationForkName]
		names = append(names, childName)
		if childName == name {
			match = append(match, d)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		sort.Strings(names)
		if len(names) == 0 {
			return ocispec.Descriptor{}, fmt.Errorf("child %q not found: manifest %s has no fork children (push them with spore push --children)", name, parent.Digest)
		}
		return ocispec.Descriptor{}, fmt.Errorf("child %q not found among the fork children of manifest %s: %s", name, parent.Digest, strings.Join(names, ", "))
	default:
		digests := make([]string, len(match))
		for i, d := range match {
			digests[i] = d.Digest.String()
		}
		return ocispec.Descriptor{}, fmt.Errorf("child %q is ambiguous: manifests %s name it; pull one by digest", name, strings.Join(digests, ", "))
	}
}

// importer fetches pack layers and stores their objects after
// verification.
type importer struct {
	ctx      context.Context
	store    *objects.Store
	src      Target
	progress func(Progress)
	result   *PullResult
}

// layer imports one pack layer, unless the store has the commit whose
// delta it carries. A commit object is in its delta's last layer, and
// objects stores it after the rest of the layer, so a stored commit means
// the delta is stored too.
func (imp *importer) layer(desc ocispec.Descriptor) error {
	owner, err := objects.ParseID(desc.Annotations[AnnotationCommit])
	if err == nil {
		have, err := imp.store.Has(owner)
		if err != nil {
			return err
		}
		if have {
			imp.result.BlobsSkipped++
			if imp.progress != nil {
				imp.progress(Progress{Digest: desc.Digest, MediaType: desc.MediaType, Objects: objectCount(desc), Done: desc.Size, Total: desc.Size, Skipped: true})
			}
			return nil
		}
	}

	rc, err := imp.src.Fetch(imp.ctx, desc)
	if err != nil {
		return fmt.Errorf("fetch layer %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	verifier := content.NewVerifyReader(rc, desc)
	reader := &progressReader{r: verifier, event: Progress{Digest: desc.Digest, MediaType: desc.MediaType, Objects: objectCount(desc), Total: desc.Size}, report: imp.progress}

	if err := imp.objects(reader); err != nil {
		return fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	if err := verifier.Verify(); err != nil {
		return fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	imp.result.Bytes += desc.Size
	imp.result.LayerBytes += desc.Size
	imp.result.Blobs++
	return nil
}

// storeWriters is the number of goroutines that verify and store batches
// of one layer while the next batch is read.
const storeWriters = 2

// objects reads pack records from r and stores them in batches, verified
// by storeWriters goroutines while the reader goes on, so the network and
// the store work at the same time. PutRawBatch verifies each object against
// its ID and names the first one that does not match. Commit objects are
// stored last, after every other object of the layer: a stored commit
// shows a later pull that its delta is complete.
func (imp *importer) objects(r io.Reader) error {
	pack, err := newPackReader(r)
	if err != nil {
		return err
	}

	batches := make(chan []objects.RawObject, storeWriters)
	results := make(chan error, storeWriters)
	for range storeWriters {
		go func() {
			var storeErr error
			for batch := range batches {
				if storeErr == nil {
					storeErr = imp.store.PutRawBatch(batch)
				}
			}
			results <- storeErr
		}()
	}

	var commits []objects.RawObject
	readErr := func() error {
		var batch []objects.RawObject
		batchBytes := 0
		for {
			id, raw, err := pack.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			obj := objects.RawObject{ID: id, Raw: append([]byte(nil), raw...)}
			imp.result.Objects++
			if len(raw) > 0 && objects.Kind(raw[0]) == objects.KindCommit {
				commits = append(commits, obj)
				continue
			}
			batch = append(batch, obj)
			batchBytes += len(raw)
			if batchBytes >= importBatchBytes {
				batches <- batch
				batch, batchBytes = nil, 0
			}
		}
		if len(batch) > 0 {
			batches <- batch
		}
		return nil
	}()
	close(batches)

	// A corrupt object is the cause when both fail: a read error after it
	// comes from the same bad bytes.
	var storeErr error
	for range storeWriters {
		if err := <-results; err != nil && storeErr == nil {
			storeErr = err
		}
	}
	if storeErr != nil {
		return storeErr
	}
	if readErr != nil {
		return readErr
	}
	if len(commits) > 0 {
		return imp.store.PutRawBatch(commits)
	}
	return nil
}

// checkClosure checks that every object commit id reaches is stored.
// Commits and trees are read (and verified) on the way; chunks are
// checked for presence in batches.
func checkClosure(store *objects.Store, id objects.ID) error {
	var chunks []objects.ID
	check := func() error {
		have, err := store.Backend().Has(chunks)
		if err != nil {
			return err
		}
		for i, ok := range have {
			if !ok {
				return fmt.Errorf("chunk %s: %w", chunks[i], objects.ErrNotFound)
			}
		}
		chunks = chunks[:0]
		return nil
	}

	err := store.Closure([]objects.ID{id}, func(l objects.Link) error {
		if l.Kind != objects.KindChunk {
			return nil
		}
		chunks = append(chunks, l.ID)
		if len(chunks) == 4096 {
			return check()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return check()
}

// createRefs creates new refs in one atomic update. A ref that already
// points to its commit is left as it is; one that points elsewhere is an
// error and no ref is written.
func createRefs(r *refs.Refs, updates []refs.Update) error {
	var apply []refs.Update
	for _, u := range updates {
		current, ok, err := r.Get(u.Name)
		if err != nil {
			return err
		}
		if ok {
			if current.ID == u.New {
				continue
			}
			return fmt.Errorf("ref %s already exists and points to %s, not the pulled commit %s (choose another --ref, or delete the ref first)", u.Name, current, u.New)
		}
		apply = append(apply, u)
	}
	if len(apply) == 0 {
		return nil
	}
	return r.Apply(apply...)
}
