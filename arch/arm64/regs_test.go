package arm64

import "testing"

// TestCoreRegIDs pins register IDs to the values the kernel headers yield;
// 0x6030000000100042 (pstate) is also the constant in gVisor's and
// Firecracker's arm64 code.
func TestCoreRegIDs(t *testing.T) {
	cases := []struct {
		name string
		got  uint64
		want uint64
	}{
		{"x0", RegX(0), 0x6030000000100000},
		{"x30", RegX(30), 0x603000000010003c},
		{"sp", RegSP, 0x603000000010003e},
		{"pc", RegPC, 0x6030000000100040},
		{"pstate", RegPSTATE, 0x6030000000100042},
		{"sp_el1", RegSPEL1, 0x6030000000100044},
		{"elr_el1", RegELREL1, 0x6030000000100046},
		{"spsr[0]", RegSPSR(0), 0x6030000000100048},
		{"v0", RegV(0), 0x6040000000100054},
		{"v31", RegV(31), 0x60400000001000d0},
		{"fpsr", RegFPSR, 0x60200000001000d4},
		{"fpcr", RegFPCR, 0x60200000001000d5},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: id %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestRegSize(t *testing.T) {
	if n := RegSize(RegPC); n != 8 {
		t.Errorf("pc size %d, want 8", n)
	}
	if n := RegSize(RegV(3)); n != 16 {
		t.Errorf("v3 size %d, want 16", n)
	}
	if n := RegSize(RegFPSR); n != 4 {
		t.Errorf("fpsr size %d, want 4", n)
	}
}

func TestRegName(t *testing.T) {
	cases := map[uint64]string{
		RegX(0):            "x0",
		RegX(30):           "x30",
		RegPC:              "pc",
		RegV(31):           "v31",
		RegSPSR(2):         "spsr[2]",
		0x603000000013c000: "MIDR_EL1",
		0x603000000013c001: "S3_0_C0_C0_1",
		0x6030000000140000: "0x6030000000140000",
	}
	for id, want := range cases {
		if got := RegName(id); got != want {
			t.Errorf("RegName(%#x) = %q, want %q", id, got, want)
		}
	}
}

func TestSysregID(t *testing.T) {
	// MIDR_EL1 is op0=3, op1=0, CRn=0, CRm=0, op2=0.
	if got := SysregID(SysregEncoding(3, 0, 0, 0, 0)); got != 0x603000000013c000 {
		t.Errorf("MIDR_EL1 id %#x, want 0x603000000013c000", got)
	}
}
