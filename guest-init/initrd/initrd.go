// Package initrd builds and carries the guest initramfs: a cpio archive
// with the guest init as /init plus the directories and device nodes the
// kernel needs before the init mounts devtmpfs.
//
// The archive is embedded from assets/init.cpio, which
// `go run ./guest-init/cmd/mkinitrd -o guest-init/initrd/assets/init.cpio`
// (or `go generate ./guest-init/initrd`) produces and which is not
// committed. Without it the package still builds, and Archive returns an
// error that names the command to build it.
package initrd

//go:generate go run ../cmd/mkinitrd -o assets/init.cpio

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
)

// The pattern matches the committed placeholder too, so the package
// builds on a fresh clone.
//
//go:embed assets
var assets embed.FS

// AssetName is the path of the built archive inside assets.
const AssetName = "assets/init.cpio"

// ErrNotBuilt is returned by Archive when the binary carries no archive.
var ErrNotBuilt = errors.New("this spore binary was built without the guest init; build it with make (which runs go run ./guest-init/cmd/mkinitrd first)")

// Archive returns the embedded initramfs archive.
func Archive() ([]byte, error) {
	b, err := assets.ReadFile(AssetName)
	if err != nil || len(b) == 0 {
		return nil, ErrNotBuilt
	}
	return b, nil
}

// Build returns a newc archive with initBinary as /init and the skeleton
// the init expects. It contains /dev with console and null nodes, because
// the kernel opens /dev/console for the init's stdio before any devtmpfs
// exists. It also contains mount points for proc, sys, run, tmp and the
// root disk (sysroot), and /etc/spore/hooks.d.
func Build(initBinary []byte) ([]byte, error) {
	if len(initBinary) < 4 || !bytes.Equal(initBinary[:4], []byte("\x7fELF")) {
		return nil, fmt.Errorf("init binary is not an ELF file (%d bytes); build it with CGO_ENABLED=0 GOOS=linux", len(initBinary))
	}
	dir := func(name string, perm uint32) Entry { return Entry{Name: name, Mode: ModeDir | perm} }
	entries := []Entry{
		{Name: "init", Mode: ModeRegular | 0o755, Data: initBinary},
		dir("dev", 0o755),
		{Name: "dev/console", Mode: ModeCharDev | 0o600, DevMajor: 5, DevMinor: 1},
		{Name: "dev/null", Mode: ModeCharDev | 0o666, DevMajor: 1, DevMinor: 3},
		dir("proc", 0o555),
		dir("sys", 0o555),
		dir("run", 0o755),
		dir("tmp", 0o1777),
		dir("root", 0o700),
		dir("sysroot", 0o755),
		dir("etc", 0o755),
		dir("etc/spore", 0o755),
		dir("etc/spore/hooks.d", 0o755),
	}
	var buf bytes.Buffer
	if err := WriteNewc(&buf, entries); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
