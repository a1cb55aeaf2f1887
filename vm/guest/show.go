package guest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spore-vm/spore/arch/arm64"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/vm"
	"github.com/spore-vm/spore/vm/virtio"
)

// The formatters make spore show print a commit's state entries by name.
func init() {
	objects.RegisterFormatter(entryConfig, formatJSON)
	objects.RegisterFormatter(entryIdentity, formatJSON)
	objects.RegisterFormatter(entryAgent, formatJSON)
	objects.RegisterFormatter(vcpuPrefix+"*", formatVCPU)
	objects.RegisterFormatter(entryGIC, formatGIC)
	objects.RegisterFormatter(virtioPrefix+"*", formatVirtio)
}

// fallback prints data that does not decode as the expected state as a hex
// summary, after saying why.
func fallback(w io.Writer, data []byte, err error) error {
	fmt.Fprintf(w, "(not a spore VM state: %v)\n", err)
	return objects.HexSummary(w, data)
}

// formatJSON prints a JSON entry (config, identity, agent) indented.
func formatJSON(w io.Writer, data []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil {
		return fallback(w, data, err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

func formatVCPU(w io.Writer, data []byte) error {
	var s vm.VCPUState
	if err := s.UnmarshalBinary(data); err != nil {
		return fallback(w, data, err)
	}
	fmt.Fprintf(w, "vcpu %d, mp_state %d, %d registers\n", s.Index, s.MPState, len(s.Registers))
	for _, r := range s.Registers {
		fmt.Fprintf(w, "%-24s %x\n", arm64.RegName(r.ID), reverse(r.Value))
	}
	return nil
}

// reverse returns a little-endian value's bytes most significant first, so
// %x prints it as a number.
func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

func formatGIC(w io.Writer, data []byte) error {
	var s vm.GICState
	if err := s.UnmarshalBinary(data); err != nil {
		return fallback(w, data, err)
	}
	fmt.Fprintf(w, "distributor: %d registers\n", len(s.Dist))
	for _, r := range s.Dist {
		if r.Value != 0 {
			fmt.Fprintf(w, "  GICD+%#06x = %#x\n", r.Key, r.Value)
		}
	}
	for i := range s.Redist {
		fmt.Fprintf(w, "vcpu %d: %d redistributor registers, %d CPU interface registers\n", i, len(s.Redist[i]), len(s.CPUInterface[i]))
		for _, r := range s.Redist[i] {
			if r.Value != 0 {
				fmt.Fprintf(w, "  GICR+%#07x = %#x\n", r.Key, r.Value)
			}
		}
		for _, r := range s.CPUInterface[i] {
			fmt.Fprintf(w, "  %s = %#x\n", arm64.SysregName(r.Key), r.Value)
		}
	}
	fmt.Fprintln(w, "(registers that are zero are not listed)")
	return nil
}

func formatVirtio(w io.Writer, data []byte) error {
	var s virtio.TransportState
	if err := s.UnmarshalBinary(data); err != nil {
		return fallback(w, data, err)
	}
	fmt.Fprintf(w, "device id %d, status %#x, driver features %#x, interrupt status %#x\n",
		s.DeviceID, s.Status, s.DriverFeatures, s.InterruptStatus)
	for i, q := range s.Queues {
		fmt.Fprintf(w, "queue %d: %+v\n", i, q)
	}
	fmt.Fprintf(w, "device state: %d bytes\n", len(s.Device))
	return nil
}
