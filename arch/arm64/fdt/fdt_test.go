package fdt

import (
	"encoding/binary"
	"os/exec"
	"strings"
	"testing"
)

func buildSample(t *testing.T) []byte {
	t.Helper()
	var b Builder
	b.BeginNode("")
	b.PropertyU32("#address-cells", 2)
	b.PropertyStrings("compatible", "spore,test", "linux,dummy-virt")
	b.BeginNode("chosen")
	b.PropertyString("bootargs", "console=hvc0 quiet")
	b.PropertyU64("linux,initrd-start", 0x48000000)
	b.PropertyEmpty("spore,flag")
	b.EndNode()
	b.EndNode()
	b.Reserve(0x1000, 0x2000)
	blob, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func TestFinishHeader(t *testing.T) {
	blob := buildSample(t)
	u32 := func(off int) uint32 { return binary.BigEndian.Uint32(blob[off:]) }

	if u32(0) != magic {
		t.Errorf("magic %#x, want %#x", u32(0), magic)
	}
	if int(u32(4)) != len(blob) {
		t.Errorf("totalsize %d, blob is %d bytes", u32(4), len(blob))
	}
	if u32(20) != version || u32(24) != lastCompVersion {
		t.Errorf("version %d/%d, want %d/%d", u32(20), u32(24), version, lastCompVersion)
	}
	offStruct, offStrings := u32(8), u32(12)
	if offStruct%4 != 0 || offStrings < offStruct {
		t.Errorf("struct block at %d, strings at %d", offStruct, offStrings)
	}
	if got := binary.BigEndian.Uint64(blob[40:]); got != 0x1000 {
		t.Errorf("first reservation at %#x, want 0x1000", got)
	}
}

// TestDecompileWithDTC checks the blob against dtc, the reference
// implementation, when it is installed (Debian package device-tree-compiler).
func TestDecompileWithDTC(t *testing.T) {
	if _, err := exec.LookPath("dtc"); err != nil {
		t.Skip("dtc not installed: apt-get install device-tree-compiler")
	}
	cmd := exec.Command("dtc", "-I", "dtb", "-O", "dts")
	cmd.Stdin = strings.NewReader(string(buildSample(t)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dtc rejected the blob: %v\n%s", err, out)
	}
	for _, want := range []string{
		"/memreserve/\t0x0000000000001000 0x0000000000002000;",
		"#address-cells = <0x02>;",
		`compatible = "spore,test\0linux,dummy-virt";`,
		`bootargs = "console=hvc0 quiet";`,
		"linux,initrd-start = <0x00 0x48000000>;",
		"spore,flag;",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dtc output lacks %q:\n%s", want, out)
		}
	}
}

func TestBuilderErrors(t *testing.T) {
	var unclosed Builder
	unclosed.BeginNode("")
	if _, err := unclosed.Finish(); err == nil {
		t.Error("unclosed root node: no error")
	}

	var stray Builder
	stray.PropertyU32("x", 1)
	if _, err := stray.Finish(); err == nil {
		t.Error("property outside a node: no error")
	}

	var extra Builder
	extra.BeginNode("")
	extra.EndNode()
	extra.EndNode()
	if _, err := extra.Finish(); err == nil {
		t.Error("EndNode without an open node: no error")
	}
}
