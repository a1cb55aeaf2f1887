package arm64

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sampleBoard() Board {
	return Board{
		MemoryBytes: 512 << 20,
		VCPUs:       2,
		Cmdline:     "console=hvc0 quiet",
		InitrdStart: 0x48000000,
		InitrdEnd:   0x48100000,
		KASLRSeed:   0x1234,
		RNGSeed:     bytes.Repeat([]byte{7}, 32),
		Virtio:      []VirtioDevice{{Index: 0}, {Index: 1}},
	}
}

func TestDeviceTreeDecompiles(t *testing.T) {
	if _, err := exec.LookPath("dtc"); err != nil {
		t.Skip("dtc not installed: apt-get install device-tree-compiler")
	}
	b := sampleBoard()
	blob, err := b.DeviceTree()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dtc", "-I", "dtb", "-O", "dts")
	cmd.Stdin = bytes.NewReader(blob)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dtc rejected the board's FDT: %v\n%s", err, out)
	}
	dts := string(out)
	for _, want := range []string{
		"cpu@0 {", "cpu@1 {",
		"memory@40000000 {", "reg = <0x00 0x40000000 0x00 0x20000000>;",
		`compatible = "arm,gic-v3";`,
		"reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x40000>;",
		"virtio_mmio@a000000 {", "virtio_mmio@a001000 {",
		"interrupts = <0x00 0x11 0x04>;",
		`bootargs = "console=hvc0 quiet";`,
		"linux,initrd-start = <0x00 0x48000000>;",
		`method = "hvc";`,
	} {
		if !strings.Contains(dts, want) {
			t.Errorf("FDT lacks %q:\n%s", want, dts)
		}
	}
}

func TestBoardValidate(t *testing.T) {
	cases := map[string]func(*Board){
		"zero vCPUs":      func(b *Board) { b.VCPUs = 0 },
		"too many vCPUs":  func(b *Board) { b.VCPUs = MaxVCPUs + 1 },
		"tiny memory":     func(b *Board) { b.MemoryBytes = 1 << 20 },
		"unaligned RAM":   func(b *Board) { b.MemoryBytes = 100<<20 + 4096 },
		"initrd reversed": func(b *Board) { b.InitrdEnd = b.InitrdStart - 1 },
	}
	for name, mutate := range cases {
		b := sampleBoard()
		mutate(&b)
		if err := b.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	b := sampleBoard()
	if err := b.Validate(); err != nil {
		t.Errorf("sample board: %v", err)
	}
}

func TestMPIDR(t *testing.T) {
	if got := MPIDR(17); got != 0x101 {
		t.Errorf("MPIDR(17) = %#x, want 0x101", got)
	}
}

func TestParseImageHeaderRejects(t *testing.T) {
	if _, err := ParseImageHeader(make([]byte, 10)); err == nil {
		t.Error("10-byte file: no error")
	}
	gz := make([]byte, 64)
	gz[0], gz[1] = 0x1f, 0x8b
	if _, err := ParseImageHeader(gz); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("gzip file: %v, want an error that says gzip", err)
	}
	bigEndian := make([]byte, 64)
	binary.LittleEndian.PutUint32(bigEndian[56:], imageMagic)
	binary.LittleEndian.PutUint64(bigEndian[16:], 1<<20)
	binary.LittleEndian.PutUint64(bigEndian[24:], 1)
	if _, err := ParseImageHeader(bigEndian); err == nil {
		t.Error("big-endian Image: no error")
	}
}

// TestParseGokrazyImage reads the header of the default guest kernel from
// the Go module cache, when the module is downloaded.
func TestParseGokrazyImage(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gokrazy/kernel.arm64").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("gokrazy kernel module not available: %v", err)
	}
	f, err := os.Open(filepath.Join(dir, "vmlinuz"))
	if err != nil {
		t.Skipf("gokrazy kernel not downloaded: %v", err)
	}
	defer f.Close()
	header := make([]byte, 64)
	if _, err := f.Read(header); err != nil {
		t.Fatal(err)
	}
	h, err := ParseImageHeader(header)
	if err != nil {
		t.Fatal(err)
	}
	if h.ImageSize == 0 || h.TextOffset != 0 {
		t.Errorf("gokrazy Image: text offset %#x, size %d; expected offset 0 and a size", h.TextOffset, h.ImageSize)
	}
}
