package rootfs

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestClearWriteCounter(t *testing.T) {
	requireE2fsprogs(t)
	path := filepath.Join(t.TempDir(), "fs.ext4")
	mke2fs, _ := lookPathSbin("mke2fs")
	if output, err := exec.Command(mke2fs, "-q", "-t", "ext4", "-O", "metadata_csum", path, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, output)
	}
	sb := make([]byte, superblockSize)
	readSuperblock := func() {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.ReadAt(sb, superblockOffset); err != nil {
			t.Fatal(err)
		}
	}
	readSuperblock()
	if binary.LittleEndian.Uint64(sb[sbKbytesWritten:]) == 0 {
		t.Fatal("mke2fs left s_kbytes_written at 0; the test cannot see a change")
	}

	if err := clearWriteCounter(path); err != nil {
		t.Fatal(err)
	}
	readSuperblock()
	if got := binary.LittleEndian.Uint64(sb[sbKbytesWritten:]); got != 0 {
		t.Errorf("s_kbytes_written = %d after clearWriteCounter", got)
	}
	fsck(t, path)
}

func TestClearWriteCounterRejectsNonExt4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zeros")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := clearWriteCounter(path); err == nil {
		t.Fatal("clearWriteCounter accepted a file of zeros")
	}
}
