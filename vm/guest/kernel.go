package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KernelEnv names a kernel Image to use instead of the installed one.
const KernelEnv = "SPORE_KERNEL"

// DefaultKernelPath finds the managed guest kernel: $SPORE_KERNEL, then
// share/spore/kernel/Image beside the directory of the running binary
// (where make install puts it), then ~/.local/share/spore/kernel/Image.
func DefaultKernelPath() (string, error) {
	if path := os.Getenv(KernelEnv); path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("%s=%s: %w", KernelEnv, path, err)
		}
		return path, nil
	}

	var candidates []string
	if exe, err := os.Executable(); err == nil {
		prefix := filepath.Dir(filepath.Dir(exe))
		candidates = append(candidates, filepath.Join(prefix, "share", "spore", "kernel", "Image"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".local", "share", "spore", "kernel", "Image"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("no guest kernel found (looked in %v): run make install, or set %s to an arm64 kernel Image", candidates, KernelEnv)
}
