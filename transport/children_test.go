package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/testsuite/registry"
)

// TestPushChildrenConcurrently pushes fork children of one parent at the
// same time, each through its own repository client and layer cache as
// separate spore processes would, and checks that listing the parent's
// children finds every one of them.
func TestPushChildrenConcurrently(t *testing.T) {
	const n = 8
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	want := make(map[string]objects.ID)
	for i := 1; i <= n; i++ {
		name := strconv.Itoa(i)
		want[name] = makeChild(t, s, base, name, 1+i%3)
	}
	repository := "spores/concurrent"
	if _, err := Push(background, s.Store, openRegistryRepo(t, reg, repository), base, PushOptions{Tag: "base"}); err != nil {
		t.Fatal(err)
	}

	type pushJob struct {
		child Child
		repo  Target
		cache string
	}
	jobs := make([]pushJob, 0, n)
	for _, child := range children(t, s) {
		jobs = append(jobs, pushJob{child: child, repo: openRegistryRepo(t, reg, repository), cache: t.TempDir()})
	}

	start := make(chan struct{})
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = Push(background, s.Store, job.repo, base, PushOptions{Children: []Child{job.child}, LayerCache: job.cache})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("push of child %s: %v", jobs[i].child.Name, err)
		}
	}

	// A fresh client, as a later spore pull --children would open.
	repo := openRegistryRepo(t, reg, repository)
	t.Logf("the referrers index lists %d of %d children", len(referrerNames(t, repo, "base")), n)
	dst := openTestStore(t)
	pulled, err := Pull(background, dst.Store, dst.refs, repo, "base", PullOptions{Children: true, ChildRefPrefix: "refs/forks/base/"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, child := range pulled.Children {
		names = append(names, child.Child)
		if child.Commit != want[child.Child] {
			t.Errorf("child %s: pulled commit %s, want %s", child.Child, child.Commit.Short(), want[child.Child].Short())
		}
	}
	if len(pulled.Children) != n {
		t.Errorf("pull --children found %d of %d children: %v", len(pulled.Children), n, names)
	}

	for name, id := range want {
		if !slices.Contains(names, name) {
			t.Errorf("child %s (%s) is missing from the listing", name, id.Short())
		}
		store := openTestStore(t)
		got, err := Pull(background, store.Store, store.refs, repo, "base", PullOptions{Child: name})
		if err != nil {
			t.Errorf("pull --child %s: %v", name, err)
			continue
		}
		if got.Commit != id {
			t.Errorf("pull --child %s: commit %s, want %s", name, got.Commit.Short(), id.Short())
		}
	}
}

// referrerNames returns the fork names that the referrers of the manifest
// tagged tag carry, without the child tags.
func referrerNames(t testing.TB, repo Target, tag string) []string {
	t.Helper()
	parent, err := repo.Resolve(background, tag)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	err = repo.Referrers(background, parent, ArtifactType, func(referrers []ocispec.Descriptor) error {
		for _, d := range referrers {
			names = append(names, d.Annotations[AnnotationForkName])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// childNames returns the fork names that listChildren finds under the
// manifest tagged tag.
func childNames(t testing.TB, repo Target, tag string) []string {
	t.Helper()
	parent, err := repo.Resolve(background, tag)
	if err != nil {
		t.Fatal(err)
	}
	list, err := listChildren(background, repo, parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Annotations[AnnotationForkName])
	}
	return names
}

// referrersOnly hides the tag listing and tagged pushes of a repository,
// so Push writes what spore wrote before child tags: manifests by digest
// and the referrers index.
type referrersOnly struct{ Target }

func TestPullChildrenWithoutChildTags(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	two := makeChild(t, s, base, "2", 2)
	makeChild(t, s, base, "1", 1)
	repo := openRegistryRepo(t, reg, "spores/old")

	pushed, err := Push(background, s.Store, referrersOnly{repo}, base, PushOptions{Tag: "base", Children: children(t, s)})
	if err != nil {
		t.Fatal(err)
	}
	tags, err := registryTags(repo)
	if err != nil {
		t.Fatal(err)
	}
	if got := childTagsOf(t, tags, pushed.Manifest); len(got) != 0 {
		t.Fatalf("a push without tag support wrote child tags %v", got)
	}

	if got := childNames(t, repo, "base"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("children of a tree without child tags = %v, want [1 2]", got)
	}
	dst := openTestStore(t)
	pulled, err := Pull(background, dst.Store, dst.refs, repo, "base", PullOptions{Child: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Commit != two {
		t.Errorf("pull --child 2 = %s, want %s", pulled.Commit.Short(), two.Short())
	}

	// Pushing the tree again adds the child tags.
	if _, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", Children: children(t, s)}); err != nil {
		t.Fatal(err)
	}
	tags, err = registryTags(repo)
	if err != nil {
		t.Fatal(err)
	}
	if got := childTagsOf(t, tags, pushed.Manifest); len(got) != 2 {
		t.Errorf("child tags after the second push = %v, want 2", got)
	}
	if got := childNames(t, repo, "base"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("children after the second push = %v, want [1 2]", got)
	}
}

func TestListChildrenLostFromReferrersIndex(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	want := makeChild(t, s, base, "1", 1)
	makeChild(t, s, base, "2", 1)
	repo := openRegistryRepo(t, reg, "spores/lost")
	pushed, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", Children: children(t, s)})
	if err != nil {
		t.Fatal(err)
	}

	// Replace the referrers index by one that lists child 2 only, as the
	// later write of two concurrent pushes leaves it.
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType:    ocispec.MediaTypeImageManifest,
			ArtifactType: ArtifactType,
			Digest:       pushed.Children[1].Manifest,
			Size:         manifestSize(t, repo, pushed.Children[1].Manifest),
			Annotations:  map[string]string{AnnotationForkName: "2"},
		}},
	}
	data, err := json.Marshal(index)
	if err != nil {
		t.Fatal(err)
	}
	indexDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := repo.PushReference(background, indexDesc, bytes.NewReader(data), "sha256-"+pushed.Manifest.Encoded()); err != nil {
		t.Fatal(err)
	}
	if got := referrerNames(t, repo, "base"); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("referrers after replacing the index = %v, want [2]", got)
	}

	if got := childNames(t, repo, "base"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("children = %v, want [1 2]", got)
	}
	dst := openTestStore(t)
	pulled, err := Pull(background, dst.Store, dst.refs, repo, "base", PullOptions{Child: "1", Ref: "refs/forks/base/1"})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Commit != want {
		t.Errorf("pull --child 1 = %s, want %s", pulled.Commit.Short(), want.Short())
	}
	fsckClean(t, dst, want)
}

func TestListChildrenSkipsForeignTags(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	makeChild(t, s, base, "1", 1)
	repo := openRegistryRepo(t, reg, "spores/foreign")
	pushed, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", Children: children(t, s)})
	if err != nil {
		t.Fatal(err)
	}

	// A fork child of another parent, in the same repository.
	other := openTestStore(t)
	otherBase := makeBase(t, other, 512<<10)
	makeChild(t, other, otherBase, "9", 1)
	otherPushed, err := Push(background, other.Store, repo, otherBase, PushOptions{Tag: "other", Children: children(t, other)})
	if err != nil {
		t.Fatal(err)
	}

	baseDesc, err := repo.Resolve(background, "base")
	if err != nil {
		t.Fatal(err)
	}
	otherChild, err := repo.Resolve(background, otherPushed.Children[0].Manifest.String())
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := childTagPrefix(baseDesc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	foreign := map[string]ocispec.Descriptor{
		// Another parent's child under base's prefix: its subject differs.
		prefix + otherChild.Digest.Encoded()[:childTagDigestLen]: otherChild,
		// base itself, under its own digest: it has no subject.
		prefix + baseDesc.Digest.Encoded()[:childTagDigestLen]: baseDesc,
		// A digest part that does not match the manifest's digest.
		prefix + strings.Repeat("ab", childTagDigestLen/2): otherChild,
		// Not child tags: another tool's tag and a malformed digest part.
		"sha256-" + baseDesc.Digest.Encoded() + ".sig":  baseDesc,
		prefix + strings.Repeat("A", childTagDigestLen): otherChild,
	}
	for tag, desc := range foreign {
		if err := repo.Tag(background, desc, tag); err != nil {
			t.Fatal(err)
		}
	}

	if got := childNames(t, repo, "base"); !slices.Equal(got, []string{"1"}) {
		t.Errorf("children of base = %v, want [1]", got)
	}
	if got := childNames(t, repo, "other"); !slices.Equal(got, []string{"9"}) {
		t.Errorf("children of other = %v, want [9]", got)
	}
	if pushed.Children[0].Name != "1" {
		t.Fatalf("pushed child %q, want 1", pushed.Children[0].Name)
	}
}

func TestChildTagFormat(t *testing.T) {
	parent := digest.FromString("parent")
	child := digest.FromString("child")
	tag, err := childTag(parent, child)
	if err != nil {
		t.Fatal(err)
	}
	want := "sha256-" + parent.Encoded() + ".child-" + child.Encoded()[:32]
	if tag != want {
		t.Errorf("childTag = %q, want %q", tag, want)
	}
	if len(tag) > 128 {
		t.Errorf("child tag has %d characters, more than the 128 that tags allow", len(tag))
	}
	prefix, err := childTagPrefix(parent)
	if err != nil {
		t.Fatal(err)
	}
	short, ok := parseChildTag(tag, prefix)
	if !ok || short != child.Encoded()[:32] {
		t.Errorf("parseChildTag(%q) = %q, %v", tag, short, ok)
	}
	for _, bad := range []string{
		"sha256-" + parent.Encoded(),
		"sha256-" + parent.Encoded() + ".sig",
		tag[:len(tag)-1],
		tag + "0",
		strings.ToUpper(tag),
		"v1",
	} {
		if short, ok := parseChildTag(bad, prefix); ok {
			t.Errorf("parseChildTag(%q) = %q, want no child tag", bad, short)
		}
	}

	sha512 := digest.SHA512.FromString("parent")
	if _, err := childTagPrefix(sha512); err == nil || !strings.Contains(err.Error(), sha512.String()) {
		t.Errorf("childTagPrefix(sha512) error = %v, want one naming the digest", err)
	}
	if _, err := childTag(parent, "sha256:xyz"); err == nil || !strings.Contains(err.Error(), "sha256:xyz") {
		t.Errorf("childTag(invalid child) error = %v, want one naming the digest", err)
	}
}

// registryTags lists every tag of repo.
func registryTags(repo childTagTarget) ([]string, error) {
	var tags []string
	err := repo.Tags(background, "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	})
	return tags, err
}

// childTagsOf returns the child tags of the manifest parent among tags.
func childTagsOf(t testing.TB, tags []string, parent digest.Digest) []string {
	t.Helper()
	prefix, err := childTagPrefix(parent)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tag := range tags {
		if _, ok := parseChildTag(tag, prefix); ok {
			out = append(out, tag)
		}
	}
	return out
}

// manifestSize returns the size of the manifest dgst in repo.
func manifestSize(t testing.TB, repo Target, dgst digest.Digest) int64 {
	t.Helper()
	desc, err := repo.Resolve(background, dgst.String())
	if err != nil {
		t.Fatal(err)
	}
	return desc.Size
}

// noTagList is a repository whose registry refuses to list tags.
type noTagList struct{ childTagTarget }

func (noTagList) Tags(context.Context, string, func([]string) error) error {
	return errors.New("tag listing is disabled on this registry")
}

func TestListChildrenWithoutTagListing(t *testing.T) {
	reg := registry.Start(t)
	s := openTestStore(t)
	base := makeBase(t, s, 1<<20)
	makeChild(t, s, base, "1", 1)
	makeChild(t, s, base, "2", 1)
	repo := openRegistryRepo(t, reg, "spores/no-tag-list")
	if _, err := Push(background, s.Store, repo, base, PushOptions{Tag: "base", Children: children(t, s)}); err != nil {
		t.Fatal(err)
	}

	if got := childNames(t, noTagList{repo}, "base"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("children from the referrers index alone = %v, want [1 2]", got)
	}
}
