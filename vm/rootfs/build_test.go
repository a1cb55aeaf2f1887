package rootfs

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spore-vm/spore/testsuite/images"
	"github.com/spore-vm/spore/testsuite/registry"
)

// requireE2fsprogs skips tests that write ext4 on hosts without e2fsprogs.
func requireE2fsprogs(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mke2fs", "debugfs", "e2fsck"} {
		if _, err := lookPathSbin(tool); err != nil {
			t.Skipf("%s not found: install e2fsprogs", tool)
		}
	}
}

// debugfsOutput runs one read-only debugfs request on an ext4 image.
func debugfsOutput(t *testing.T, image, request string) string {
	t.Helper()
	path, _ := lookPathSbin("debugfs")
	output, err := exec.Command(path, "-R", request, image).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v: %s", request, err, output)
	}
	return string(output)
}

// fsck runs e2fsck -fn and fails the test on any problem it reports.
func fsck(t *testing.T, image string) {
	t.Helper()
	path, _ := lookPathSbin("e2fsck")
	output, err := exec.Command(path, "-fn", image).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", image, err, output)
	}
}

// statField returns the value after label in debugfs stat output, such as
// "User:" or "Mode:".
func statField(t *testing.T, stat, label string) string {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(label) + `\s+(\S+)`).FindStringSubmatch(stat)
	if m == nil {
		t.Fatalf("no %s in debugfs output:\n%s", label, stat)
	}
	return m[1]
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// busyboxLayout writes the busybox test image to an OCI layout and
// returns its oci-layout: reference.
func busyboxLayout(t testing.TB) (string, *images.Image) {
	t.Helper()
	img, err := images.Busybox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := img.WriteLayout(context.Background(), dir, "test"); err != nil {
		t.Fatal(err)
	}
	return ociLayoutPrefix + dir + ":test", img
}

func TestBuildBusyboxFromLayout(t *testing.T) {
	requireE2fsprogs(t)
	ref, img := busyboxLayout(t)
	cacheDir := t.TempDir()
	output := filepath.Join(t.TempDir(), "out.ext4")

	built, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir, Output: output})
	if err != nil {
		t.Fatal(err)
	}
	if built.Cached {
		t.Error("the first build reports Cached")
	}
	want, _ := img.ManifestDigest()
	if built.ManifestDigest != want.String() {
		t.Errorf("ManifestDigest = %s, want %s", built.ManifestDigest, want)
	}
	if built.Platform != "linux/arm64" {
		t.Errorf("Platform = %q", built.Platform)
	}
	if !slices.Contains(built.Config.Env, images.BusyboxMarker) || built.Config.WorkingDir != "/root" {
		t.Errorf("Config = %+v, want Env with %s and WorkingDir /root", built.Config, images.BusyboxMarker)
	}
	if fileSHA256(t, built.Path) != fileSHA256(t, output) {
		t.Error("the --output copy differs from the cached image")
	}
	fsck(t, built.Path)

	t.Run("contents", func(t *testing.T) {
		if got := debugfsOutput(t, built.Path, "cat /etc/group"); !strings.Contains(got, "user:x:1000:") {
			t.Errorf("/etc/group = %q", got)
		}
		if got := debugfsOutput(t, built.Path, "stat /bin/sh"); !strings.Contains(got, `Fast link dest: "busybox"`) {
			t.Errorf("/bin/sh is not a symlink to busybox:\n%s", got)
		}
		busybox := debugfsOutput(t, built.Path, "stat /bin/busybox")
		if statField(t, busybox, "Mode:") != "0755" || statField(t, busybox, "Type:") != "regular" {
			t.Errorf("/bin/busybox:\n%s", busybox)
		}
	})
	t.Run("owners", func(t *testing.T) {
		home := debugfsOutput(t, built.Path, "stat /home/user")
		if statField(t, home, "User:") != "1000" || statField(t, home, "Group:") != "1000" || statField(t, home, "Mode:") != "0750" {
			t.Errorf("/home/user is not 1000:1000 mode 0750:\n%s", home)
		}
		notes := debugfsOutput(t, built.Path, "stat /home/user/notes")
		if statField(t, notes, "User:") != "1000" || statField(t, notes, "Mode:") != "0600" {
			t.Errorf("/home/user/notes is not owned by 1000 with mode 0600:\n%s", notes)
		}
		root := debugfsOutput(t, built.Path, "stat /etc/passwd")
		if statField(t, root, "User:") != "0" || statField(t, root, "Group:") != "0" {
			t.Errorf("/etc/passwd is not owned by root:\n%s", root)
		}
	})
	t.Run("special modes", func(t *testing.T) {
		if mode := statField(t, debugfsOutput(t, built.Path, "stat /usr/bin/suid"), "Mode:"); mode != "04755" {
			t.Errorf("/usr/bin/suid mode = %s, want 04755", mode)
		}
		if mode := statField(t, debugfsOutput(t, built.Path, "stat /tmp"), "Mode:"); mode != "01777" {
			t.Errorf("/tmp mode = %s, want 01777", mode)
		}
	})
	t.Run("device node", func(t *testing.T) {
		null := debugfsOutput(t, built.Path, "stat /dev/null")
		if statField(t, null, "Type:") != "character" || statField(t, null, "Mode:") != "0666" {
			t.Errorf("/dev/null is not a character device with mode 0666:\n%s", null)
		}
		if !strings.Contains(null, "Device major/minor number: 01:03") {
			t.Errorf("/dev/null is not device 1,3:\n%s", null)
		}
	})
	t.Run("capability xattr", func(t *testing.T) {
		got := debugfsOutput(t, built.Path, "ea_get -x /usr/bin/ping security.capability")
		if !strings.Contains(got, "01 00 00 02 00 20 00 00") {
			t.Errorf("security.capability of /usr/bin/ping = %q", got)
		}
	})
	t.Run("hard link", func(t *testing.T) {
		ping := debugfsOutput(t, built.Path, "stat /usr/bin/ping")
		link := debugfsOutput(t, built.Path, "stat /usr/bin/ping-link")
		if statField(t, ping, "Inode:") != statField(t, link, "Inode:") || statField(t, ping, "Links:") != "2" {
			t.Errorf("/usr/bin/ping and ping-link are not one inode with 2 links:\n%s\n%s", ping, link)
		}
	})

	again, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Path != built.Path {
		t.Errorf("second build: Cached=%v Path=%s, want the cached %s", again.Cached, again.Path, built.Path)
	}
	if !slices.Equal(again.Config.Env, built.Config.Env) {
		t.Errorf("the cached image has Env %v, the built one %v", again.Config.Env, built.Config.Env)
	}
}

func TestBuildReproducible(t *testing.T) {
	requireE2fsprogs(t)
	ref, _ := busyboxLayout(t)

	first, err := Build(context.Background(), ref, BuildOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Build(context.Background(), ref, BuildOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if second.Cached {
		t.Fatal("a build into an empty cache reports Cached")
	}
	if a, b := fileSHA256(t, first.Path), fileSHA256(t, second.Path); a != b {
		t.Errorf("two builds of one image differ: sha256 %s and %s", a, b)
	}

	// Another user's build sets every owner with debugfs, because no host
	// file has the owner the layer names.
	hostOwner = func() (int, int) { return 54321, 54321 }
	t.Cleanup(func() { hostOwner = func() (int, int) { return os.Geteuid(), os.Getegid() } })
	other, err := Build(context.Background(), ref, BuildOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := fileSHA256(t, first.Path), fileSHA256(t, other.Path); a != b {
		t.Errorf("builds as this user and as uid 54321 differ: sha256 %s and %s", a, b)
	}
}

func TestBuildFromRegistry(t *testing.T) {
	requireE2fsprogs(t)
	reg := registry.Start(t)
	img, err := images.Busybox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Reference("busybox") + ":test"
	desc, err := img.Push(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()

	built, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if built.Cached || built.ManifestDigest != desc.Digest.String() {
		t.Errorf("first build: Cached=%v ManifestDigest=%s, want a new build of %s", built.Cached, built.ManifestDigest, desc.Digest)
	}
	fsck(t, built.Path)

	// Delete the layer from the registry's storage: a second build that
	// fetched any layer would fail.
	layers, err := img.LayerDescriptors()
	if err != nil {
		t.Fatal(err)
	}
	layerHex := layers[0].Digest.Encoded()
	if err := os.RemoveAll(filepath.Dir(reg.BlobPath(layerHex))); err != nil {
		t.Fatal(err)
	}
	again, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatalf("second build with the layer gone from the registry: %v", err)
	}
	if !again.Cached {
		t.Error("second build is not Cached")
	}

	// A build pinned by digest needs no registry once the image is cached.
	reg.Kill()
	pinned, err := Build(context.Background(), reg.Reference("busybox")+"@"+desc.Digest.String(), BuildOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatalf("build by digest with the registry stopped: %v", err)
	}
	if !pinned.Cached || pinned.Path != built.Path {
		t.Errorf("build by digest: Cached=%v Path=%s, want the cached %s", pinned.Cached, pinned.Path, built.Path)
	}
}

func TestBuildRejectsWrongPlatform(t *testing.T) {
	ref, _ := hostileLayout(t, t.TempDir(), images.NewTar().File("etc/hostname", 0o644, "arm64\n"))
	_, err := Build(context.Background(), ref, BuildOptions{CacheDir: t.TempDir(), Platform: "linux/amd64"})
	if err == nil || !strings.Contains(err.Error(), "is for linux/arm64, not linux/amd64") {
		t.Fatalf("err = %v, want a platform mismatch", err)
	}
}

func TestBuildKeepsUnusualNames(t *testing.T) {
	requireE2fsprogs(t)
	names := []string{
		"with space",
		`double"quote`,
		`back\slash`,
		"-leading-dash",
		"ünïcødé",
		"semi;colon",
		"#hash",
		"tab\tname",
	}
	layer := images.NewTar().Dir("odd", 0o755)
	for _, name := range names {
		layer.Header(&tar.Header{Typeflag: tar.TypeReg, Name: "odd/" + name, Mode: 0o640, Uid: 7, Gid: 8}, []byte(name+"\n"))
	}
	ref, _ := hostileLayout(t, t.TempDir(), layer)

	built, err := Build(context.Background(), ref, BuildOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, built.Path)
	for _, name := range names {
		stat := debugfsOutput(t, built.Path, "stat "+debugfsQuote("/odd/"+name))
		if statField(t, stat, "User:") != "7" || statField(t, stat, "Group:") != "8" || statField(t, stat, "Mode:") != "0640" {
			t.Errorf("/odd/%s is not 7:8 mode 0640:\n%s", name, stat)
		}
	}
}

func TestBuildReportsMissingTag(t *testing.T) {
	dir := t.TempDir()
	ref, _ := hostileLayout(t, dir, images.NewTar().File("etc/hostname", 0o644, "x\n"))
	missing := strings.TrimSuffix(ref, ":hostile") + ":nope"

	_, err := Build(context.Background(), missing, BuildOptions{CacheDir: t.TempDir()})
	want := `not found: "nope" in OCI layout ` + filepath.Join(dir, "layout")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
}

func TestBuildConcurrentSameImage(t *testing.T) {
	requireE2fsprogs(t)
	ref, _ := hostileLayout(t, t.TempDir(), images.NewTar().File("etc/hostname", 0o644, "x\n"))
	cacheDir := t.TempDir()

	results := make(chan *Image, 2)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			img, err := Build(context.Background(), ref, BuildOptions{CacheDir: cacheDir})
			results <- img
			errs <- err
		}()
	}
	var paths []string
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		paths = append(paths, (<-results).Path)
	}
	if paths[0] != paths[1] {
		t.Errorf("concurrent builds returned %s and %s, want one cache entry", paths[0], paths[1])
	}
	if entries, _ := os.ReadDir(filepath.Join(cacheDir, tmpDir)); len(entries) != 0 {
		t.Errorf("concurrent builds left %d build directories", len(entries))
	}
	fsck(t, paths[0])
}
