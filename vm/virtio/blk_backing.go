package virtio

import (
	"fmt"
	"os"
)

// BlockBacking stores the contents of a block device. Implementations must
// be safe for concurrent use. ReadAt and WriteAt follow io.ReaderAt and
// io.WriterAt, Flush makes completed writes durable, and Size returns the
// size in bytes, which must not change while the device exists.
type BlockBacking interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	Size() int64
}

// FileBacking is a BlockBacking over a raw image file.
type FileBacking struct {
	f    *os.File
	size int64
}

// OpenFileBacking opens the raw image at path, read-only when readOnly is
// true. Its size is taken once, at open.
func OpenFileBacking(path string, readOnly bool) (*FileBacking, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("virtio block: opening disk image: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("virtio block: disk image %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("virtio block: disk image %s is not a regular file (mode %s)", path, info.Mode())
	}
	return &FileBacking{f: f, size: info.Size()}, nil
}

// ReadAt reads from the image.
func (b *FileBacking) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }

// WriteAt writes to the image.
func (b *FileBacking) WriteAt(p []byte, off int64) (int, error) { return b.f.WriteAt(p, off) }

// Flush calls fsync on the image.
func (b *FileBacking) Flush() error { return b.f.Sync() }

// Size returns the image size in bytes at open.
func (b *FileBacking) Size() int64 { return b.size }

// Close closes the image file.
func (b *FileBacking) Close() error { return b.f.Close() }
