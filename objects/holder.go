package objects

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ownerFile names the file in a store directory that records which process
// holds the database, so that waiting processes can name it.
const ownerFile = "owner"

// writeOwner records this process as the database holder.
func writeOwner(storeDir string) {
	exe, _ := os.Executable()
	line := fmt.Sprintf("%d %s\n", os.Getpid(), filepath.Base(exe))
	_ = os.WriteFile(filepath.Join(storeDir, ownerFile), []byte(line), 0o644)
}

// readHolder returns "process PID (NAME)" for the recorded holder, or ""
// when none is recorded.
func readHolder(storeDir string) string {
	b, err := os.ReadFile(filepath.Join(storeDir, ownerFile))
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return ""
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return ""
	}
	if len(fields) > 1 {
		return fmt.Sprintf("process %d (%s)", pid, fields[1])
	}
	return fmt.Sprintf("process %d", pid)
}
