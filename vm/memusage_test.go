package vm

import (
	"strings"
	"testing"
)

const smapsSample = `7f0000000000-7f0000100000 rw-p 00000000 00:01 42   /memfd:spore-guest-ram (deleted)
Size:               1024 kB
Rss:                 512 kB
Pss:                 256 kB
Shared_Clean:        500 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:        12 kB
Anonymous:            12 kB
VmFlags: rd wr mr mw me ac
7f0000100000-7f0000200000 rw-p 00100000 00:01 42   /memfd:spore-guest-ram (deleted)
Rss:                   8 kB
Pss:                   8 kB
Anonymous:             8 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                 999 kB
Pss:                 999 kB
`

func TestParseSmapsSumsSplitMapping(t *testing.T) {
	usage, err := parseSmapsRange(strings.NewReader(smapsSample), 0x7f0000000000, 0x7f0000200000)
	if err != nil {
		t.Fatal(err)
	}
	want := MemoryUsage{RSS: 520 << 10, PSS: 264 << 10, Anonymous: 20 << 10, Shared: 500 << 10}
	if usage != want {
		t.Errorf("usage %+v, want %+v", usage, want)
	}
}

func TestParseSmapsMissingMapping(t *testing.T) {
	_, err := parseSmapsRange(strings.NewReader(smapsSample), 0x1000, 0x2000)
	if err == nil || !strings.Contains(err.Error(), "0x1000") {
		t.Errorf("error %v, want one naming the range", err)
	}
}

func TestParseSmapsMatchesByPath(t *testing.T) {
	usage, paths, err := parseSmaps(strings.NewReader(smapsSample), func(e SmapsEntry) bool {
		return strings.HasPrefix(e.Path, "/memfd:")
	})
	if err != nil {
		t.Fatal(err)
	}
	if usage.RSS != 520<<10 {
		t.Errorf("RSS of the memfd entries = %d KiB, expected 520", usage.RSS>>10)
	}
	if len(paths) != 1 || !paths["/memfd:spore-guest-ram (deleted)"] {
		t.Errorf("paths = %v, expected the memfd's path with its spaces", paths)
	}
}
