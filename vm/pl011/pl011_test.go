package pl011

import (
	"bytes"
	"testing"
)

type recordingLine struct{ levels []bool }

func (r *recordingLine) SetLevel(asserted bool) { r.levels = append(r.levels, asserted) }

func TestTransmitAndFlags(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, nil)
	for _, c := range []byte("hi\n") {
		u.HandleMMIO(regDR, []byte{c, 0, 0, 0}, true)
	}
	if out.String() != "hi\n" {
		t.Errorf("output %q, want %q", out.String(), "hi\n")
	}

	fr := make([]byte, 4)
	u.HandleMMIO(regFR, fr, false)
	if got := getLE(fr); got != flagRXFE|flagTXFE {
		t.Errorf("FR = %#x, want TXFE|RXFE (%#x)", got, flagRXFE|flagTXFE)
	}
}

func TestPrimeCellID(t *testing.T) {
	u := New(&bytes.Buffer{}, nil)
	var id uint32
	for i := 0; i < 4; i++ {
		b := make([]byte, 4)
		u.HandleMMIO(regID+uint64(4*i), b, false)
		id |= getLE(b) << (8 * i)
	}
	// The AMBA bus matches part number 0x011 and designer 0x41 (ARM).
	if id&0x000fffff != 0x00041011 {
		t.Errorf("PeriphID %#x, want part 0x011 and designer 0x41", id)
	}
}

func TestTransmitInterruptFollowsMask(t *testing.T) {
	line := &recordingLine{}
	u := New(&bytes.Buffer{}, line)
	u.HandleMMIO(regIMSC, []byte{intTX, 0, 0, 0}, true)
	u.HandleMMIO(regIMSC, []byte{intTX, 0, 0, 0}, true)
	u.HandleMMIO(regIMSC, []byte{0, 0, 0, 0}, true)
	want := []bool{true, false}
	if len(line.levels) != len(want) || line.levels[0] != true || line.levels[1] != false {
		t.Errorf("interrupt levels %v, want %v", line.levels, want)
	}
}
