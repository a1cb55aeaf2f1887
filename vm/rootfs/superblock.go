package rootfs

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
)

// ext4 superblock layout (Documentation/filesystems/ext4/super.rst in
// Linux): the primary superblock is 1024 bytes at offset 1024.
const (
	superblockOffset     = 1024
	superblockSize       = 1024
	sbMagicOffset        = 0x38
	sbFeatureROCompat    = 0x64
	sbKbytesWritten      = 0x178
	sbChecksumOffset     = 0x3fc
	ext4Magic            = 0xef53
	roCompatMetadataCsum = 0x400
)

// clearWriteCounter sets s_kbytes_written, the count of KiB ever written
// to the file system, to zero and updates the superblock checksum. mke2fs
// and debugfs add what they wrote, which depends on how many inode fields
// the script had to set, and so on the user who ran the build.
func clearWriteCounter(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()

	sb := make([]byte, superblockSize)
	if _, err := f.ReadAt(sb, superblockOffset); err != nil {
		return fmt.Errorf("read the superblock of %s: %w", path, err)
	}
	if magic := binary.LittleEndian.Uint16(sb[sbMagicOffset:]); magic != ext4Magic {
		return fmt.Errorf("%s has superblock magic %#x, not ext4's %#x", path, magic, ext4Magic)
	}
	csum := binary.LittleEndian.Uint32(sb[sbFeatureROCompat:])&roCompatMetadataCsum != 0
	if csum && binary.LittleEndian.Uint32(sb[sbChecksumOffset:]) != superblockChecksum(sb) {
		return fmt.Errorf("the superblock checksum of %s does not match before the update", path)
	}

	binary.LittleEndian.PutUint64(sb[sbKbytesWritten:], 0)
	if csum {
		binary.LittleEndian.PutUint32(sb[sbChecksumOffset:], superblockChecksum(sb))
	}
	if _, err := f.WriteAt(sb, superblockOffset); err != nil {
		return fmt.Errorf("write the superblock of %s: %w", path, err)
	}
	return f.Close()
}

// superblockChecksum is the kernel's crc32c_le(~0, sb, 1020), which has no
// final inversion, unlike crc32.Checksum.
func superblockChecksum(sb []byte) uint32 {
	return ^crc32.Checksum(sb[:sbChecksumOffset], crc32.MakeTable(crc32.Castagnoli))
}
