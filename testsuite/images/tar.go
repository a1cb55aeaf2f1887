package images

import (
	"archive/tar"
	"bytes"
	"time"
)

// Epoch is the modification time of entries that Tar writes without one.
var Epoch = time.Unix(1700000000, 0).UTC()

// Tar writes a layer tar in memory. Entries appear in the order they are
// added, so a test can write hostile orders and names as they are.
type Tar struct {
	buf bytes.Buffer
	w   *tar.Writer
	err error
}

// NewTar returns an empty layer.
func NewTar() *Tar {
	t := &Tar{}
	t.w = tar.NewWriter(&t.buf)
	return t
}

// Header adds an entry with content data (nil for none). Missing times
// become Epoch and the PAX format is used, so xattrs survive.
func (t *Tar) Header(hdr *tar.Header, data []byte) *Tar {
	if t.err != nil {
		return t
	}
	if hdr.ModTime.IsZero() {
		hdr.ModTime = Epoch
	}
	hdr.Format = tar.FormatPAX
	hdr.Size = int64(len(data))
	if t.err = t.w.WriteHeader(hdr); t.err == nil && len(data) > 0 {
		_, t.err = t.w.Write(data)
	}
	return t
}

// Dir adds a directory owned by root.
func (t *Tar) Dir(name string, mode int64) *Tar {
	return t.Header(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}, nil)
}

// File adds a regular file owned by root.
func (t *Tar) File(name string, mode int64, data string) *Tar {
	return t.Header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, []byte(data))
}

// Symlink adds a symlink at name that points to target.
func (t *Tar) Symlink(name, target string) *Tar {
	return t.Header(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
}

// Link adds a hard link at name to the earlier entry target.
func (t *Tar) Link(name, target string) *Tar {
	return t.Header(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}, nil)
}

// Bytes ends the archive and returns it, or the first error.
func (t *Tar) Bytes() ([]byte, error) {
	if t.err != nil {
		return nil, t.err
	}
	if err := t.w.Close(); err != nil {
		return nil, err
	}
	return t.buf.Bytes(), nil
}
