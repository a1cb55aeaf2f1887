package initrd

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeELF is enough for Build, which only checks the ELF magic.
var fakeELF = append([]byte("\x7fELF"), bytes.Repeat([]byte{0xab}, 1001)...)

func TestBuildReproducible(t *testing.T) {
	a, err := Build(fakeELF)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	b, err := Build(append([]byte(nil), fakeELF...))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of the same init differ (%d and %d bytes)", len(a), len(b))
	}
	if !bytes.HasPrefix(a, []byte("070701")) {
		t.Errorf("archive starts with %q, expected the newc magic 070701", a[:6])
	}
	if len(a)%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", len(a))
	}
}

func TestBuildRejectsNonELF(t *testing.T) {
	if _, err := Build([]byte("#!/bin/sh\n")); err == nil || !strings.Contains(err.Error(), "not an ELF file") {
		t.Errorf("Build(script) = %v, expected a not-ELF error", err)
	}
}

// TestBuildReadByCpio lists and extracts the archive with GNU cpio, an
// independent reader of the format.
func TestBuildReadByCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio is not installed (Debian package cpio)")
	}
	archive, err := Build(fakeELF)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	cmd := exec.Command(cpio, "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -itv: %v", err)
	}
	listing := string(out)
	for _, want := range []string{
		"crw-------   1 root     root       5,   1 Jan  1  1970 dev/console",
		"crw-rw-rw-   1 root     root       1,   3 Jan  1  1970 dev/null",
		"-rwxr-xr-x   1 root     root         1005 Jan  1  1970 init",
		"drwxrwxrwt   2 root     root            0 Jan  1  1970 tmp",
		"etc/spore/hooks.d",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, listing)
		}
	}

	dir := t.TempDir()
	cmd = exec.Command(cpio, "-id", "--quiet", "--no-absolute-filenames", "init")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v: %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil || !bytes.Equal(got, fakeELF) {
		t.Errorf("extracted init differs from the input (%d bytes, %v)", len(got), err)
	}
}

func TestWriteNewcRejectsBadNames(t *testing.T) {
	for _, entries := range [][]Entry{
		{{Name: "/abs", Mode: ModeDir | 0o755}},
		{{Name: "a/../b", Mode: ModeDir | 0o755}},
		{{Name: "", Mode: ModeDir | 0o755}},
		{{Name: "x", Mode: ModeDir}, {Name: "x", Mode: ModeDir}},
		{{Name: "d", Mode: ModeDir, Data: []byte("x")}},
	} {
		if err := WriteNewc(&bytes.Buffer{}, entries); err == nil {
			t.Errorf("WriteNewc(%+v) succeeded, expected an error", entries)
		}
	}
}

func TestArchive(t *testing.T) {
	b, err := Archive()
	if _, statErr := os.Stat(AssetName); statErr != nil {
		// In a tree where mkinitrd has not run, the error names the fix.
		if !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "build it with make") {
			t.Errorf("Archive() = %v, expected ErrNotBuilt with the fix", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Archive() with %s present: %v", AssetName, err)
	}
	if !bytes.HasPrefix(b, []byte("070701")) {
		t.Errorf("embedded archive starts with %q, expected the newc magic", b[:6])
	}
}
