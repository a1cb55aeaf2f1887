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
	usage, err := parseSmaps(f, start, start+m.ram.size())
	if err != nil {
		return MemoryUsage{}, fmt.Errorf("read guest RAM memory usage from /proc/self/smaps: %w", err)
	}
	return usage, nil
}

// parseSmaps sums the fields of the smaps entries that lie inside
// [start, end). The kernel may split one mapping into several entries.
func parseSmaps(r io.Reader, start, end uint64) (MemoryUsage, error) {
	var usage MemoryUsage
	inside := false
	found := false
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := scanner.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}

		// A header line starts with the address range, "7f00-7f80 rw-p ...".
		if lo, hi, ok := parseRange(fields[0]); ok {
			inside = lo >= start && hi <= end
			found = found || inside
			continue
		}
		if !inside || len(fields) != 3 || fields[2] != "kB" {
			continue
		}
		kib, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return MemoryUsage{}, fmt.Errorf("invalid line %q: %w", line, err)
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
		return MemoryUsage{}, err
	}
	if !found {
		return MemoryUsage{}, fmt.Errorf("no mapping inside [%#x, %#x)", start, end)
	}
	return usage, nil
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
