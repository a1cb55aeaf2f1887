package virtio

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestMemoryBoundsChecks(t *testing.T) {
	mem := newTestMemory(t)
	end := uint64(testRAMBase + testRAMSize)
	cases := []struct {
		name      string
		addr, len uint64
		ok        bool
	}{
		{"first byte", testRAMBase, 1, true},
		{"last byte", end - 1, 1, true},
		{"whole RAM", testRAMBase, testRAMSize, true},
		{"empty at end", end, 0, true},
		{"below base", testRAMBase - 1, 1, false},
		{"straddles end", end - 1, 2, false},
		{"past end", end, 1, false},
		{"wraps around", math.MaxUint64, 2, false},
		{"huge length", testRAMBase, math.MaxUint64, false},
	}
	for _, c := range cases {
		err := mem.Check(c.addr, c.len)
		if c.ok && err != nil {
			t.Errorf("%s: Check(%#x, %d) = %v, want nil", c.name, c.addr, c.len, err)
		}
		if !c.ok && !errors.Is(err, ErrOutsideRAM) {
			t.Errorf("%s: Check(%#x, %d) = %v, want ErrOutsideRAM", c.name, c.addr, c.len, err)
		}
	}
}

func TestMemoryErrorNamesRange(t *testing.T) {
	mem := newTestMemory(t)
	err := mem.Read(0x1000, make([]byte, 16))
	var access *AccessError
	if !errors.As(err, &access) {
		t.Fatalf("Read outside RAM returned %v, want *AccessError", err)
	}
	want := "guest memory read of 16 bytes at 0x1000 is outside RAM [0x40000000, 0x40400000)"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestMemoryDirtyPages(t *testing.T) {
	mem := newTestMemory(t)
	if err := mem.Write(testRAMBase+PageSize-1, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.WritableSlice(testRAMBase+10*PageSize, 1); err != nil {
		t.Fatal(err)
	}
	if err := mem.StoreUint16(testRAMBase+100*PageSize+2, 7); err != nil {
		t.Fatal(err)
	}
	if err := mem.Read(testRAMBase+50*PageSize, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}

	want := []uint64{testRAMBase, testRAMBase + PageSize, testRAMBase + 10*PageSize, testRAMBase + 100*PageSize}
	if got := mem.TakeDirtyPages(); !slices.Equal(got, want) {
		t.Errorf("dirty pages = %#x, want %#x", got, want)
	}
	if got := mem.TakeDirtyPages(); len(got) != 0 {
		t.Errorf("dirty pages after taking them = %#x, want none", got)
	}
}

func TestMemoryAtomicHalves(t *testing.T) {
	mem := newTestMemory(t)
	addr := uint64(testRAMBase + 0x100)
	if err := mem.Write(addr, []byte{0x11, 0x22, 0x33, 0x44}); err != nil {
		t.Fatal(err)
	}
	if err := mem.StoreUint16(addr+2, 0xbeef); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if err := mem.Read(addr, got); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x11, 0x22, 0xef, 0xbe}; !slices.Equal(got, want) {
		t.Errorf("memory after StoreUint16 = %x, want %x", got, want)
	}
	if v, err := mem.LoadUint16(addr); err != nil || v != 0x2211 {
		t.Errorf("LoadUint16 = %#x, %v; want 0x2211", v, err)
	}
	if _, err := mem.LoadUint16(addr + 1); err == nil {
		t.Errorf("LoadUint16 at an odd address succeeded")
	}
	if err := mem.StoreUint16(testRAMBase+testRAMSize-1, 1); err == nil {
		t.Errorf("StoreUint16 straddling the end of RAM succeeded")
	}
}

func TestNewMemoryRejectsBadLayout(t *testing.T) {
	cases := []struct {
		name string
		base uint64
		size int
	}{
		{"empty", 0, 0},
		{"unaligned base", 0x100, PageSize},
		{"partial page", 0, PageSize + 1},
		{"wraps", math.MaxUint64 - PageSize + 1, 2 * PageSize},
	}
	for _, c := range cases {
		if _, err := NewMemory(c.base, make([]byte, c.size)); err == nil {
			t.Errorf("%s: NewMemory succeeded", c.name)
		}
	}
}
