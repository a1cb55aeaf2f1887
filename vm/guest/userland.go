package guest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spore-vm/spore/guest-init/initrd"
)

// BusyboxEnv names a static arm64 busybox binary to use instead of the
// installed one.
const BusyboxEnv = "SPORE_BUSYBOX"

// busyboxApplets are the commands linked to busybox in the guest's /bin
// when it runs without a root disk. The list is fixed because busybox
// cannot be asked for its applets on a host of another architecture.
var busyboxApplets = []string{
	"sh", "ash", "cat", "cp", "mv", "rm", "ln", "ls", "mkdir", "rmdir",
	"touch", "chmod", "chown", "echo", "printf", "env", "true", "false",
	"test", "[", "sleep", "date", "uname", "id", "whoami", "hostname",
	"head", "tail", "wc", "grep", "sed", "awk", "cut", "sort", "uniq",
	"tr", "od", "hexdump", "dd", "md5sum", "sha256sum", "find", "xargs",
	"ps", "kill", "nproc", "free", "df", "du", "mount", "umount", "sync",
	"pwd", "stat", "seq", "tee", "yes", "vi", "less", "more", "clear",
	"reset", "stty", "tty", "which", "basename", "dirname", "readlink",
	"realpath", "timeout", "nohup", "watch", "ip", "ping",
}

// DefaultBusyboxPath finds the static arm64 busybox that gives guests
// without a root disk a shell: $SPORE_BUSYBOX, then
// share/spore/busybox/busybox beside the directory of the running binary,
// then ~/.local/share/spore/busybox/busybox.
func DefaultBusyboxPath() (string, error) {
	return findAsset(BusyboxEnv, filepath.Join("busybox", "busybox"),
		"install Debian's busybox-static for arm64 with make install")
}

// userlandArchive returns a cpio archive with busybox as /bin/busybox and
// its applets linked in /bin. Appended to the init archive, it gives the
// initramfs a shell and the usual tools.
func userlandArchive(busybox []byte) ([]byte, error) {
	entries := []initrd.Entry{
		{Name: "bin", Mode: initrd.ModeDir | 0o755},
		{Name: "bin/busybox", Mode: modeRegular | 0o755, Data: busybox},
	}
	for _, applet := range busyboxApplets {
		entries = append(entries, initrd.Entry{Name: "bin/" + applet, Mode: modeSymlink | 0o777, Data: []byte("busybox")})
	}
	var archive bytes.Buffer
	if err := initrd.WriteNewc(&archive, entries); err != nil {
		return nil, fmt.Errorf("build the busybox archive: %w", err)
	}
	return archive.Bytes(), nil
}

// File type bits of a cpio mode (the S_IF* values of stat(2)).
const (
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

// findAsset locates a runtime asset: the file named by env, then rel under
// share/spore beside the binary's directory, then under
// ~/.local/share/spore. hint names the install step.
func findAsset(env, rel, hint string) (string, error) {
	if path := os.Getenv(env); path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, path, err)
		}
		return path, nil
	}

	var candidates []string
	if exe, err := os.Executable(); err == nil {
		prefix := filepath.Dir(filepath.Dir(exe))
		candidates = append(candidates, filepath.Join(prefix, "share", "spore", rel))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".local", "share", "spore", rel))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%s not found (looked in %v): %s, or set %s", filepath.Base(rel), candidates, hint, env)
}
