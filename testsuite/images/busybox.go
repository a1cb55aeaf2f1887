package images

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BusyboxApplets are the commands the busybox image links to
// /bin/busybox.
var BusyboxApplets = []string{
	"cat", "chmod", "cp", "date", "dd", "echo", "env", "false", "find",
	"grep", "head", "hostname", "id", "ln", "ls", "mkdir", "mount", "mv",
	"ps", "pwd", "rm", "sed", "sh", "sleep", "stat", "sync", "tail", "test",
	"touch", "true", "uname", "wc",
}

// BusyboxMarker is the value of SPORE_IMAGE in the busybox image's Env.
const BusyboxMarker = "SPORE_IMAGE=busybox-test"

// Busybox returns a one-layer arm64 image with busybox-static from Debian
// as /bin/busybox, a symlink for each of BusyboxApplets, /etc/passwd and
// /etc/group, the mount points that spore's guest init needs, the device
// node /dev/null, and files that exercise owners,
// setuid, hard links and a security.capability xattr. Its config sets
// BusyboxMarker in Env and /root as WorkingDir.
func Busybox(ctx context.Context) (*Image, error) {
	deb, err := unpackDeb(ctx, "busybox-static:arm64", "busybox-static")
	if err != nil {
		return nil, err
	}
	binary, err := os.ReadFile(filepath.Join(deb, "bin", "busybox"))
	if err != nil {
		return nil, fmt.Errorf("read busybox from the unpacked package: %w", err)
	}

	t := NewTar().
		Dir("bin", 0o755).
		File("bin/busybox", 0o755, string(binary))
	for _, applet := range BusyboxApplets {
		t.Symlink("bin/"+applet, "busybox")
	}
	t.Dir("dev", 0o755).
		Header(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil).
		Dir("etc", 0o755).
		File("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n").
		File("etc/group", 0o644, "root:x:0:\nuser:x:1000:\n").
		Dir("home", 0o755).
		Header(&tar.Header{Typeflag: tar.TypeDir, Name: "home/user", Mode: 0o750, Uid: 1000, Gid: 1000}, nil).
		Header(&tar.Header{Typeflag: tar.TypeReg, Name: "home/user/notes", Mode: 0o600, Uid: 1000, Gid: 1000}, []byte("owned by user\n")).
		Dir("proc", 0o555).
		Dir("root", 0o700).
		Dir("run", 0o755).
		Dir("sys", 0o555).
		Dir("tmp", 0o1777).
		Dir("usr", 0o755).
		Dir("usr/bin", 0o755).
		Header(&tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/suid", Mode: 0o4755}, []byte("#!/bin/sh\nid\n")).
		Header(&tar.Header{
			Typeflag:   tar.TypeReg,
			Name:       "usr/bin/ping",
			Mode:       0o755,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capNetRaw},
		}, []byte("#!/bin/sh\necho ping\n")).
		Link("usr/bin/ping-link", "usr/bin/ping")
	layer, err := t.Bytes()
	if err != nil {
		return nil, err
	}
	return &Image{
		Layers: [][]byte{layer},
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/bin:/usr/bin", BusyboxMarker},
			WorkingDir: "/root",
			Cmd:        []string{"/bin/sh"},
		},
	}, nil
}

// capNetRaw is a VFS_CAP_REVISION_2 security.capability value that grants
// CAP_NET_RAW (bit 13) as permitted and effective.
const capNetRaw = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
