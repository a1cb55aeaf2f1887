package vm

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spore-vm/spore/arch/arm64"
)

// VCPUDebugState is the part of one vCPU's state that a report of a stuck
// guest shows.
type VCPUDebugState struct {
	Index int
	// MPState is KVM_MP_STATE_RUNNABLE (0) or KVM_MP_STATE_STOPPED (1).
	MPState    uint32
	PC, PSTATE uint64
	// TimerCTL, TimerCNT and TimerCVAL are the virtual timer's control
	// register, counter and compare value.
	TimerCTL, TimerCNT, TimerCVAL uint64
	// Exits counts the vCPU's KVM exits by reason since the machine started.
	Exits map[string]uint64
}

// String formats the state on one line.
func (s VCPUDebugState) String() string {
	var exits []string
	for _, name := range slices.Sorted(maps.Keys(s.Exits)) {
		exits = append(exits, fmt.Sprintf("%s=%d", name, s.Exits[name]))
	}
	return fmt.Sprintf("vcpu %d: mp_state %d pc %#x pstate %#x timer ctl %#x cnt %#x cval %#x exits [%s]",
		s.Index, s.MPState, s.PC, s.PSTATE, s.TimerCTL, s.TimerCNT, s.TimerCVAL, strings.Join(exits, " "))
}

// DebugState pauses the machine, reads every vCPU's program counter, power
// state, virtual timer and exit counts, and resumes it. It is for reports
// of a guest that stopped responding. When the vCPUs do not park within
// timeout it returns an error, and the machine then stays paused once they
// do.
func (m *Machine) DebugState(timeout time.Duration) ([]VCPUDebugState, error) {
	paused := make(chan error, 1)
	go func() { paused <- m.Pause() }()
	select {
	case err := <-paused:
		if err != nil {
			return nil, err
		}
	case <-time.After(timeout):
		return nil, fmt.Errorf("the vCPUs did not stop within %v", timeout)
	}
	defer m.Resume()

	states := make([]VCPUDebugState, 0, len(m.vcpus))
	for _, c := range m.vcpus {
		s := VCPUDebugState{Index: c.index, Exits: maps.Clone(c.exits)}
		var err error
		if s.MPState, err = c.kvm.MPState(); err != nil {
			return nil, err
		}
		for _, r := range []struct {
			id  uint64
			dst *uint64
		}{
			{arm64.RegPC, &s.PC}, {arm64.RegPSTATE, &s.PSTATE},
			{arm64.RegTimerCTL, &s.TimerCTL}, {arm64.RegTimerCNT, &s.TimerCNT}, {arm64.RegTimerCVAL, &s.TimerCVAL},
		} {
			if *r.dst, err = c.kvm.GetOneReg(r.id); err != nil {
				return nil, fmt.Errorf("vcpu %d: read register %s: %w", c.index, arm64.RegName(r.id), err)
			}
		}
		states = append(states, s)
	}
	return states, nil
}
