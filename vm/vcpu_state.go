package vm

import (
	"fmt"

	"github.com/spore-vm/spore/arch/arm64"
)

// VCPUState is the architectural state of one vCPU as KVM exposes it: every
// register of KVM_GET_REG_LIST, which covers the core, FP/SIMD, system and
// timer registers and the firmware pseudo-registers, plus its power state.
type VCPUState struct {
	Index int
	// MPState is KVM_MP_STATE_RUNNABLE (0) or KVM_MP_STATE_STOPPED (1) for
	// a vCPU that PSCI has powered off.
	MPState uint32
	// Registers are in the order KVM listed them.
	Registers []Register
}

// Register is one KVM register ID and its value, little-endian, as long as
// the size encoded in the ID.
type Register struct {
	ID    uint64
	Value []byte
}

// saveState reads the vCPU's state. The vCPU must be parked.
func (c *vcpu) saveState() (VCPUState, error) {
	s := VCPUState{Index: c.index}
	var err error
	if s.MPState, err = c.kvm.MPState(); err != nil {
		return s, err
	}

	ids, err := c.kvm.RegList()
	if err != nil {
		return s, err
	}
	for _, id := range ids {
		value := make([]byte, arm64.RegSize(id))
		if err := c.kvm.GetOneRegBytes(id, value); err != nil {
			return s, err
		}
		s.Registers = append(s.Registers, Register{ID: id, Value: value})
	}
	return s, nil
}

// restoreState writes a saved state into a vCPU that was created and
// initialized but has not run.
func (c *vcpu) restoreState(s VCPUState) error {
	if s.Index != c.index {
		return fmt.Errorf("restore vcpu %d from the state of vcpu %d", c.index, s.Index)
	}
	for _, r := range s.Registers {
		if err := c.kvm.SetOneRegBytes(r.ID, r.Value); err != nil {
			// Registers KVM exposes read-only (ID registers) accept a write
			// of the value they already hold; anything else is a mismatch.
			current := make([]byte, len(r.Value))
			if getErr := c.kvm.GetOneRegBytes(r.ID, current); getErr != nil || string(current) != string(r.Value) {
				return fmt.Errorf("restore register %#x of vcpu %d: %w", r.ID, c.index, err)
			}
		}
	}
	return c.kvm.SetMPState(s.MPState)
}
