package guest

import (
	"os"
	"path/filepath"
)

// KernelEnv names a kernel Image to use instead of the installed one.
const KernelEnv = "SPORE_KERNEL"

// DefaultKernelPath finds the managed guest kernel, the gokrazy arm64
// kernel: $SPORE_KERNEL, then share/spore/kernel/Image beside the directory
// of the running binary (where make install puts it), then
// ~/.local/share/spore/kernel/Image.
func DefaultKernelPath() (string, error) {
	return findAsset(KernelEnv, filepath.Join("kernel", "Image"),
		"run make install, or pass --kernel with an arm64 kernel Image")
}

// DefaultKernel reads the managed guest kernel.
func DefaultKernel() ([]byte, error) {
	path, err := DefaultKernelPath()
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}
