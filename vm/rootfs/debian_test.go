package rootfs

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/spore-vm/spore/testsuite/images"
	"github.com/spore-vm/spore/testsuite/registry"
)

func TestBuildDebianFromRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Debian minbase image of about 190 MB")
	}
	requireE2fsprogs(t)
	img, err := images.Debian(context.Background())
	if errors.Is(err, images.ErrNeedsRoot) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.Start(t)
	ref := reg.Reference("debian") + ":test"
	if _, err := img.Push(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()

	built, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, built.Path)
	osRelease := debugfsOutput(t, built.Path, "cat /usr/lib/os-release")
	if !strings.Contains(osRelease, `VERSION_CODENAME=bookworm`) {
		t.Errorf("/usr/lib/os-release does not name bookworm:\n%s", osRelease)
	}
	if link := debugfsOutput(t, built.Path, "stat /etc/os-release"); !strings.Contains(link, "../usr/lib/os-release") {
		t.Errorf("/etc/os-release is not a symlink to ../usr/lib/os-release:\n%s", link)
	}
	if !slices.Contains(built.Config.Env, images.DebianMarker) || built.Config.WorkingDir != "/root" {
		t.Errorf("Config = %+v, want Env with %s and WorkingDir /root", built.Config, images.DebianMarker)
	}

	again, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Path != built.Path {
		t.Errorf("second build: Cached=%v Path=%s, want the cached %s", again.Cached, again.Path, built.Path)
	}
	// Another user's build sets every owner with debugfs. Before spore
	// zeroed the superblock's write counter, this image differed between
	// root and other users.
	hostOwner = func() (int, int) { return 54321, 54321 }
	t.Cleanup(func() { hostOwner = func() (int, int) { return os.Geteuid(), os.Getegid() } })
	other, err := Build(context.Background(), ref, BuildOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := fileSHA256(t, built.Path), fileSHA256(t, other.Path); a != b {
		t.Errorf("builds as this user and as uid 54321 differ: sha256 %s and %s", a, b)
	}
}
