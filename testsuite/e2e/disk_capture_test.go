package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// diskSummary is the part of spore run's --json summary about root disks.
type diskSummary struct {
	ExitCode int    `json:"exit_code"`
	Commit   string `json:"commit"`
	Import   *struct {
		Index  string `json:"index"`
		Cached bool   `json:"cached"`
		Store  struct {
			ChunksWritten int64 `json:"chunks_written"`
		} `json:"store"`
	} `json:"root_disk_import"`
	Capture *struct {
		RootDisk *struct {
			DirtyChunks int64 `json:"dirty_chunks"`
			DirtyBytes  int64 `json:"dirty_bytes"`
			Store       struct {
				ChunksWritten int64 `json:"chunks_written"`
				NodesWritten  int64 `json:"nodes_written"`
				BytesWritten  int64 `json:"bytes_written"`
			} `json:"store"`
		} `json:"root_disk"`
	} `json:"capture"`
}

func parseDiskSummary(t *testing.T, stderr string) diskSummary {
	t.Helper()
	start := strings.Index(stderr, "{\n")
	if start < 0 {
		t.Fatalf("no JSON summary on stderr:\n%s", stderr)
	}
	var s diskSummary
	if err := json.Unmarshal([]byte(stderr[start:]), &s); err != nil {
		t.Fatalf("decode summary: %v\n%s", err, stderr[start:])
	}
	return s
}

// maxSmallWriteChunks bounds the dirty disk chunks of a capture after a
// command that writes one small file: 1/16 of the test image's 1024
// chunks. ext4 writes the file's data, inode table, directory, bitmaps,
// group descriptor and journal blocks, and the superblocks when it is
// frozen, each in its own 64 KiB chunk at worst: 22 to 30 chunks in three runs.
const maxSmallWriteChunks = 64

// TestDiskCaptureForkDiverge writes a file on the root disk, captures the
// guest, forks the commit into three children and resumes each of them to
// write its own file. Each child must read the parent's file from the disk but
// none of its siblings' files, and each child capture must store only a few
// disk chunks.
func TestDiskCaptureForkDiverge(t *testing.T) {
	sporeBinary(t)
	store := t.TempDir()
	image := rootFS(t)
	pristine, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}

	// The parent writes a file and is captured.
	r := spore(t, "", "--store", store, "--json", "run", "--rootfs", image, "--rootfs-writable", "--capture", "base",
		"--", "/bin/sh", "-c", "echo from-parent > /root/parent.txt")
	if r.code != 0 {
		t.Fatalf("parent: status %d\nstderr:\n%s", r.code, r.stderr)
	}
	s := parseDiskSummary(t, r.stderr)
	if s.Import == nil || s.Import.Cached || s.Import.Store.ChunksWritten == 0 {
		t.Fatalf("parent: want a first, uncached import of the image: %+v", s.Import)
	}
	if s.Capture == nil || s.Capture.RootDisk == nil || s.Capture.RootDisk.DirtyChunks == 0 {
		t.Fatalf("parent capture has no dirty root disk chunks:\n%s", r.stderr)
	}
	after, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, pristine) {
		t.Fatal("the guest's writes changed the image file; they belong in the overlay")
	}

	// Three fork children of base, which share its disks/root. drop_caches
	// makes the guest read the files from the disk rather than from the
	// page cache in the captured RAM.
	children := forkChildren(t, store, "base", 3)
	for i := 1; i <= 3; i++ {
		script := fmt.Sprintf("echo 3 > /proc/sys/vm/drop_caches; cat /root/parent.txt; echo from-child-%d > /root/child-%d.txt; ls /root", i, i)
		r := spore(t, "", "--store", store, "--json", "run", "--from", "forks/"+children[i-1], "--capture", fmt.Sprintf("child-%d", i),
			"--", "/bin/sh", "-c", script)
		if r.code != 0 {
			t.Fatalf("child %d: status %d\nstdout:\n%s\nstderr:\n%s", i, r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "from-parent") {
			t.Errorf("child %d does not see the parent's file: %q", i, r.stdout)
		}
		for j := 1; j <= 3; j++ {
			if j != i && strings.Contains(r.stdout, fmt.Sprintf("child-%d.txt", j)) {
				t.Errorf("child %d sees child %d's file: %q", i, j, r.stdout)
			}
		}

		s := parseDiskSummary(t, r.stderr)
		if s.Import != nil {
			t.Errorf("child %d imported an image; a resume must use the commit's disk", i)
		}
		if s.Capture == nil || s.Capture.RootDisk == nil {
			t.Fatalf("child %d: capture has no root disk figures:\n%s", i, r.stderr)
		}
		disk := s.Capture.RootDisk
		t.Logf("child %d: %d dirty disk chunks, %d chunks and %d index nodes written, %d bytes stored",
			i, disk.DirtyChunks, disk.Store.ChunksWritten, disk.Store.NodesWritten, disk.Store.BytesWritten)
		if disk.DirtyChunks == 0 || disk.DirtyChunks > maxSmallWriteChunks {
			t.Errorf("child %d: %d dirty disk chunks after writing one small file, want 1 to %d", i, disk.DirtyChunks, maxSmallWriteChunks)
		}
		if disk.Store.ChunksWritten > disk.DirtyChunks {
			t.Errorf("child %d: %d disk chunks written, more than the %d dirty ones", i, disk.Store.ChunksWritten, disk.DirtyChunks)
		}
	}

	// A child's own file survives into its commit, on disk.
	r = spore(t, "", "--store", store, "run", "--from", "child-2",
		"--", "/bin/sh", "-c", "echo 3 > /proc/sys/vm/drop_caches; cat /root/child-2.txt; ls /root")
	if r.code != 0 || !strings.Contains(r.stdout, "from-child-2") {
		t.Fatalf("resume of child-2: status %d, stdout %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "child-1.txt") || strings.Contains(r.stdout, "child-3.txt") {
		t.Errorf("child-2 sees its siblings' files: %q", r.stdout)
	}

	// A new boot from the image reuses the import and finds none of the
	// writes.
	r = spore(t, "", "--store", store, "--json", "run", "--rootfs", image, "--", "/bin/ls", "/root")
	if r.code != 0 {
		t.Fatalf("boot from the image again: status %d\nstderr:\n%s", r.code, r.stderr)
	}
	s = parseDiskSummary(t, r.stderr)
	if s.Import == nil || !s.Import.Cached {
		t.Errorf("second boot from the same image file was not served from the import cache: %+v", s.Import)
	}
	if strings.Contains(r.stdout, "parent.txt") {
		t.Errorf("a fresh boot from the image sees the parent's file: %q", r.stdout)
	}
}
