package objects

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// isEmptyVlogError recognizes badger's failure to open a value log file of
// zero bytes.
//
// NOTE: badger v4.9.6 creates a value log file and writes its header in two
// steps. A process killed between them leaves an empty .vlog file, and every
// later open fails with "Open existing file ... Create a new file".
// TestKill9DuringImportAndRefUpdate hit it about once in 100 kills.
func isEmptyVlogError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Open existing file") && strings.Contains(msg, ".vlog") && strings.Contains(msg, "Create a new file")
}

// removeEmptyVlogs deletes value log files of zero bytes. They hold no
// data, not even a header, so nothing can refer to them. It takes badger's
// directory lock itself first, so it never races an open database.
func removeEmptyVlogs(dir string) (int, error) {
	lockPath := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return 0, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)

	paths, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil || st.Size() != 0 {
			continue
		}
		if err := os.Remove(p); err != nil {
			return removed, err
		}
		slog.Warn("store recovery: removed an empty value log file left by a crash", "file", p)
		removed++
	}
	return removed, nil
}
