package vm

import (
	"errors"
	"fmt"

	"github.com/spore-vm/spore/vm/virtio"
)

// Snapshot is the complete state of a paused machine: enough to restore it
// in a new process on a compatible host.
type Snapshot struct {
	MemoryBytes uint64
	CPUs        []VCPUState
	GIC         GICState
	// Devices are the virtio transports' states, in board order.
	Devices []virtio.TransportState
	// Memory is a copy of guest RAM.
	//
	// NOTE: a full copy, for in-process restore; capture into the object
	// store writes only changed chunks and restore pages them in lazily.
	Memory []byte
}

// Snapshot reads the machine's state. The machine must be paused, and its
// devices must be quiet (no request in flight).
func (m *Machine) Snapshot() (*Snapshot, error) {
	if !m.pause.isRequested() {
		return nil, errors.New("snapshot of a running machine: call Pause first")
	}
	s := &Snapshot{MemoryBytes: m.cfg.MemoryBytes}

	for _, c := range m.vcpus {
		state, err := c.saveState()
		if err != nil {
			return nil, err
		}
		s.CPUs = append(s.CPUs, state)
	}
	gic, err := m.saveGIC()
	if err != nil {
		return nil, err
	}
	s.GIC = gic
	for i, t := range m.transports {
		state, err := t.Save()
		if err != nil {
			return nil, fmt.Errorf("save virtio device %d: %w", i, err)
		}
		s.Devices = append(s.Devices, state)
	}
	s.Memory = append([]byte(nil), m.ram.mem...)
	return s, nil
}

// Restore creates a machine from a snapshot. cfg describes the same board
// (memory size, vCPU count) with fresh devices of the same types in the same
// order; its Kernel, Initrd and Cmdline are not used, because the guest is
// already booted. The machine starts running at Run.
func Restore(cfg Config, s *Snapshot) (*Machine, error) {
	switch {
	case cfg.MemoryBytes != s.MemoryBytes:
		return nil, fmt.Errorf("snapshot has %d bytes of RAM, the configuration %d", s.MemoryBytes, cfg.MemoryBytes)
	case cfg.VCPUs != len(s.CPUs):
		return nil, fmt.Errorf("snapshot has %d vCPUs, the configuration %d", len(s.CPUs), cfg.VCPUs)
	case len(cfg.Devices) != len(s.Devices):
		return nil, fmt.Errorf("snapshot has %d virtio devices, the configuration %d", len(s.Devices), len(cfg.Devices))
	case uint64(len(s.Memory)) != s.MemoryBytes:
		return nil, fmt.Errorf("snapshot memory is %d bytes, expected %d", len(s.Memory), s.MemoryBytes)
	}

	m, err := create(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.restore(s); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Machine) restore(s *Snapshot) error {
	copy(m.ram.mem, s.Memory)
	for i, c := range m.vcpus {
		if err := c.restoreState(s.CPUs[i]); err != nil {
			return err
		}
	}
	if err := m.restoreGIC(s.GIC); err != nil {
		return err
	}
	for i, t := range m.transports {
		if err := t.Restore(s.Devices[i]); err != nil {
			return fmt.Errorf("restore virtio device %d: %w", i, err)
		}
	}
	m.logger.Debug("machine restored", "vcpus", len(m.vcpus), "memory_mib", s.MemoryBytes>>20, "devices", len(m.transports))
	return nil
}
