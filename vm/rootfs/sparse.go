package rootfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// copySparse copies the file src to dst through a temporary file in dst's
// directory and a rename, leaving holes where src has zero blocks, so a
// mostly empty ext4 image stays small on disk.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()

	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name())

	buf := make([]byte, 64<<10)
	var size int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if isZero(buf[:n]) {
				_, err2 := tmp.Seek(int64(n), io.SeekCurrent)
				if err2 != nil {
					tmp.Close()
					return err2
				}
			} else if _, err2 := tmp.Write(buf[:n]); err2 != nil {
				tmp.Close()
				return fmt.Errorf("write %s: %w", dst, err2)
			}
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Truncate(size); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

var zeroBlock = make([]byte, 64<<10)

func isZero(b []byte) bool {
	return bytes.Equal(b, zeroBlock[:len(b)])
}

// diskUsage returns the bytes a file occupies on disk, or 0.
func diskUsage(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
