package initrd

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// File types and permission bits of a cpio mode (the st_mode values).
const (
	ModeDir     = 0o040000
	ModeRegular = 0o100000
	ModeCharDev = 0o020000
	ModeSymlink = 0o120000
)

// Entry is one member of a newc archive.
type Entry struct {
	Name     string // path without a leading slash, such as "dev/console"
	Mode     uint32 // file type and permission bits
	Data     []byte // content of a regular file, or the target of a symlink
	DevMajor uint32 // device number of a character device
	DevMinor uint32
}

// WriteNewc writes entries as a cpio "newc" archive (the format the Linux
// kernel unpacks as an initramfs), sorted by name and with every mtime,
// UID and GID zero, so equal entries always give equal bytes.
func WriteNewc(w io.Writer, entries []Entry) error {
	sorted := append([]Entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for i, e := range sorted {
		if e.Name == "" || strings.HasPrefix(e.Name, "/") || strings.Contains(e.Name, "..") {
			return fmt.Errorf("cpio entry %q: expected a relative path without ..", e.Name)
		}
		if i > 0 && sorted[i-1].Name == e.Name {
			return fmt.Errorf("cpio entry %q appears twice", e.Name)
		}
		if len(e.Data) > 0 && e.Mode&0o170000 != ModeRegular && e.Mode&0o170000 != ModeSymlink {
			return fmt.Errorf("cpio entry %q: only regular files and symlinks have data", e.Name)
		}
		if err := writeMember(w, uint32(i+1), e); err != nil {
			return err
		}
	}
	return writeMember(w, 0, Entry{Name: "TRAILER!!!"})
}

func writeMember(w io.Writer, ino uint32, e Entry) error {
	nlink := uint32(1)
	if e.Mode&0o170000 == ModeDir {
		nlink = 2
	}
	// 110-byte header: magic and 13 fields of 8 hex digits.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.DevMajor, e.DevMinor, len(e.Name)+1, 0)
	var b strings.Builder
	b.WriteString(hdr)
	b.WriteString(e.Name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if _, err := w.Write(e.Data); err != nil {
		return err
	}
	if pad := (4 - len(e.Data)%4) % 4; pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	return nil
}
