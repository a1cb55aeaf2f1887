package vm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// MemoryUsage is how much host memory a machine's guest RAM mapping uses,
// from /proc/self/smaps, in bytes.
type MemoryUsage struct {
	// RSS counts the resident pages of the mapping, shared or not.
	RSS uint64 `json:"rss_bytes"`
	// PSS divides each resident page by the number of mappings of it, in
	// this process and in others. Summed over the machines of one backing
	// it counts every shared page once.
	PSS uint64 `json:"pss_bytes"`
	// Anonymous counts the pages only this mapping has: all resident pages
	// of anonymous guest RAM, or the private copies the guest wrote in a
	// mapping of a shared backing.
	Anonymous uint64 `json:"anonymous_bytes"`
	// Shared counts resident pages that other mappings also map.
	Shared uint64 `json:"shared_bytes"`
}

// MemoryUsage reads the host memory used by guest RAM from
// /proc/self/smaps.
func (m *Machine) MemoryUsage() (MemoryUsage, error) {
	if m.ram == nil || m.ram.mem == nil {
		return MemoryUsage{}, errors.New("read guest RAM memory usage: the machine is closed")
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return MemoryUsage{}, fmt.Errorf("read guest RAM memory usage: %w", err)
	}
	defer f.Close()

	start := uint64(m.ram.hostAddr())
	usage, err := parseSmapsRange(f, start, start+m.ram.size())
	if err != nil {
		return MemoryUsage{}, fmt.Errorf("read guest RAM memory usage from /proc/self/smaps: %w", err)
	}
	return usage, nil
}

// SmapsEntry is the header of one /proc/PID/smaps entry: its address
// range and the path it maps, empty for anonymous memory.
type SmapsEntry struct {
	Start, End uint64
	Path       string
}

// ProcessMemoryUsage sums the /proc/PID/smaps entries of process pid for
// which match returns true, and returns the paths of those entries. It
// measures the guest RAM of machines in another process, such as a spore
// command that a test started.
func ProcessMemoryUsage(pid int, match func(SmapsEntry) bool) (MemoryUsage, map[string]bool, error) {
	path := fmt.Sprintf("/proc/%d/smaps", pid)
	f, err := os.Open(path)
	if err != nil {
		return MemoryUsage{}, nil, fmt.Errorf("read the memory usage of process %d: %w", pid, err)
	}
	defer f.Close()

	usage, paths, err := parseSmaps(f, match)
	if err != nil {
		return MemoryUsage{}, nil, fmt.Errorf("read the memory usage from %s: %w", path, err)
	}
	return usage, paths, nil
}

// parseSmapsRange sums the fields of the smaps entries that lie inside
// [start, end). The kernel may split one mapping into several entries.
func parseSmapsRange(r io.Reader, start, end uint64) (MemoryUsage, error) {
	usage, paths, err := parseSmaps(r, func(e SmapsEntry) bool { return e.Start >= start && e.End <= end })
	if err != nil {
		return MemoryUsage{}, err
	}
	if len(paths) == 0 {
		return MemoryUsage{}, fmt.Errorf("no mapping inside [%#x, %#x)", start, end)
	}
	return usage, nil
}

// parseSmaps sums the fields of the smaps entries that match accepts and
// returns the set of their paths, in which anonymous entries are "".
func parseSmaps(r io.Reader, match func(SmapsEntry) bool) (MemoryUsage, map[string]bool, error) {
	var usage MemoryUsage
	paths := map[string]bool{}
	inside := false
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := scanner.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}

		// A header line starts with the address range and ends with the
		// path, if any, from the sixth field on: "7f00-7f80 rw-p 0 00:05 7 /a".
		if lo, hi, ok := parseRange(fields[0]); ok {
			entry := SmapsEntry{Start: lo, End: hi}
			if len(fields) >= 6 {
				entry.Path = strings.Join(fields[5:], " ")
			}
			inside = match(entry)
			if inside {
				paths[entry.Path] = true
			}
			continue
		}
		if !inside || len(fields) != 3 || fields[2] != "kB" {
			continue
		}
		kib, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return MemoryUsage{}, nil, fmt.Errorf("invalid line %q: %w", line, err)
		}
		switch fields[0] {
		case "Rss:":
			usage.RSS += kib << 10
		case "Pss:":
			usage.PSS += kib << 10
		case "Anonymous:":
			usage.Anonymous += kib << 10
		case "Shared_Clean:", "Shared_Dirty:":
			usage.Shared += kib << 10
		}
	}
	if err := scanner.Err(); err != nil {
		return MemoryUsage{}, nil, err
	}
	return usage, paths, nil
}

// parseRange parses "lo-hi" in hexadecimal.
func parseRange(s string) (lo, hi uint64, ok bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, false
	}
	lo, errLo := strconv.ParseUint(a, 16, 64)
	hi, errHi := strconv.ParseUint(b, 16, 64)
	if errLo != nil || errHi != nil || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}

// Bits of a /proc/PID/pagemap entry, from the kernel's
// Documentation/admin-guide/mm/pagemap.rst.
const (
	pagemapPresent = 1 << 63
	// pagemapFileOrShared is set for a page of a file or of shared
	// anonymous memory. The private copy that a write makes has it clear.
	pagemapFileOrShared = 1 << 61
)

// PrivatePages returns the guest physical addresses of the RAM pages that
// this machine holds as anonymous pages of its own. For RAM mapped from a
// shared backing these are the pages its guest or devices wrote since the
// resume, and the chunks that a full backing could not take. For
// anonymous RAM they are all resident pages. It reads /proc/self/pagemap.
func (m *Machine) PrivatePages() ([]uint64, error) {
	if m.ram == nil || m.ram.mem == nil {
		return nil, errors.New("read private guest RAM pages: the machine is closed")
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, fmt.Errorf("read private guest RAM pages: %w", err)
	}
	defer f.Close()

	pageSize := uint64(os.Getpagesize())
	pages := m.ram.size() / pageSize
	entries := make([]byte, 8*pages)
	if _, err := f.ReadAt(entries, int64(uint64(m.ram.hostAddr())/pageSize*8)); err != nil {
		return nil, fmt.Errorf("read private guest RAM pages from /proc/self/pagemap: %w", err)
	}
	var addrs []uint64
	for i := range pages {
		e := binary.LittleEndian.Uint64(entries[8*i:])
		if e&pagemapPresent != 0 && e&pagemapFileOrShared == 0 {
			addrs = append(addrs, m.ram.base+i*pageSize)
		}
	}
	return addrs, nil
}
