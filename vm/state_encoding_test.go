package vm

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleVCPUState() VCPUState {
	return VCPUState{
		Index:   1,
		MPState: 1,
		Registers: []Register{
			{ID: 0x6030000000100040, Value: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
			{ID: 0x6040000000100054, Value: bytes.Repeat([]byte{9}, 16)},
			{ID: 0x60200000001000d4, Value: []byte{1, 0, 0, 0}},
		},
	}
}

func sampleGICState() GICState {
	return GICState{
		Dist:         []GICRegister{{Key: 0, Value: 0x37}, {Key: 0x100, Value: 0xffff}},
		Redist:       [][]GICRegister{{{Key: 0x10100, Value: 1}}, {{Key: 0x10100, Value: 2}}},
		CPUInterface: [][]GICRegister{{{Key: 0xc665, Value: 7}}, {{Key: 0xc665, Value: 7}}},
		LineLevels:   []GICRegister{{Key: 32, Value: 0}},
	}
}

func TestVCPUStateRoundTrip(t *testing.T) {
	in := sampleVCPUState()
	data, _ := in.MarshalBinary()
	var out VCPUState
	if err := out.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the state:\n%+v\n%+v", in, out)
	}
	again, _ := out.MarshalBinary()
	if !bytes.Equal(data, again) {
		t.Error("encoding is not deterministic")
	}
}

func TestGICStateRoundTrip(t *testing.T) {
	in := sampleGICState()
	data, _ := in.MarshalBinary()
	var out GICState
	if err := out.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the state:\n%+v\n%+v", in, out)
	}
}

func TestStateDecodeRejects(t *testing.T) {
	good, _ := sampleVCPUState().MarshalBinary()
	cases := map[string][]byte{
		"empty":          {},
		"wrong format":   append([]byte{'X'}, good[1:]...),
		"wrong version":  append([]byte{formatVCPU, 9}, good[2:]...),
		"truncated":      good[:len(good)-3],
		"trailing bytes": append(append([]byte(nil), good...), 0),
	}
	for name, data := range cases {
		var s VCPUState
		if err := s.UnmarshalBinary(data); !errors.Is(err, ErrStateEncoding) {
			t.Errorf("%s: error %v, want ErrStateEncoding", name, err)
		}
	}

	// A register whose value length disagrees with its ID is rejected.
	bad := VCPUState{Registers: []Register{{ID: 0x6030000000100040, Value: []byte{1, 2}}}}
	data, _ := bad.MarshalBinary()
	var s VCPUState
	if err := s.UnmarshalBinary(data); !errors.Is(err, ErrStateEncoding) {
		t.Errorf("wrong register size: error %v, want ErrStateEncoding", err)
	}
}

func FuzzVCPUStateDecode(f *testing.F) {
	good, _ := sampleVCPUState().MarshalBinary()
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		var s VCPUState
		if err := s.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := s.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Errorf("decoded state re-encodes differently")
		}
	})
}

func FuzzGICStateDecode(f *testing.F) {
	good, _ := sampleGICState().MarshalBinary()
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		var s GICState
		s.UnmarshalBinary(data)
	})
}
