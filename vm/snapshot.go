package vm

import (
	"errors"
	"fmt"
	"io"
	"os"

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
	// Memory is a copy of guest RAM, or nil when RAM is captured and
	// restored by other means (the object store and a Pager).
	Memory []byte
}

// Snapshot reads the machine's state with a full copy of guest RAM. The
// machine must be paused.
func (m *Machine) Snapshot() (*Snapshot, error) {
	s, err := m.SnapshotState()
	if err != nil {
		return nil, err
	}
	s.Memory = make([]byte, m.ram.size())
	if _, err := m.ReadAt(s.Memory, 0); err != nil {
		return nil, err
	}
	return s, nil
}

// SnapshotState reads the machine's state without guest RAM; the caller
// saves RAM itself, for example with ReadAt and DirtyPages. The machine
// must be paused.
func (m *Machine) SnapshotState() (*Snapshot, error) {
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
	return s, nil
}

// Restore creates a machine from a snapshot. cfg describes the same board
// (memory size, vCPU count) with fresh devices of the same types in the same
// order. Its Kernel, Initrd and Cmdline are not used, because the guest is
// already booted. Guest RAM comes from s.Memory, or, when pager is not nil,
// lazily from pager as the guest and the devices touch it. The machine
// starts running at Run.
func Restore(cfg Config, s *Snapshot, pager Pager) (*Machine, error) {
	if err := checkRestore(cfg, s); err != nil {
		return nil, err
	}
	if pager == nil && uint64(len(s.Memory)) != s.MemoryBytes {
		return nil, fmt.Errorf("snapshot memory is %d bytes, expected %d", len(s.Memory), s.MemoryBytes)
	}

	m, err := create(cfg, nil)
	if err != nil {
		return nil, err
	}
	if pager != nil {
		// Register RAM before anything touches it: restoring devices may
		// read their rings.
		m.lazy, err = startLazyMemory(m.ram, pager, nil, m.logger, func(err error) { m.stop(0, err) })
		if err != nil {
			m.Close()
			return nil, err
		}
		m.mem.SetPrefault(m.lazy.ensure)
	} else {
		copy(m.ram.mem, s.Memory)
	}
	if err := m.restore(s); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// RestoreShared creates a machine from a snapshot, as Restore does, with
// guest RAM mapped privately from shared. Pages no machine wrote are shared
// with every other machine restored from the same backing. The guest's
// writes stay in this machine. s.Memory is not used, and shared must
// outlive the machine.
func RestoreShared(cfg Config, s *Snapshot, shared *SharedMemory) (*Machine, error) {
	if err := checkRestore(cfg, s); err != nil {
		return nil, err
	}
	if shared.Size() != s.MemoryBytes {
		return nil, fmt.Errorf("snapshot has %d bytes of RAM, the shared backing %d", s.MemoryBytes, shared.Size())
	}

	m, err := create(cfg, shared)
	if err != nil {
		return nil, err
	}
	m.lazy, err = startLazyMemory(m.ram, shared.pager, shared, m.logger, func(err error) { m.stop(0, err) })
	if err != nil {
		m.Close()
		return nil, err
	}
	m.mem.SetPrefault(m.lazy.ensure)
	if err := m.restore(s); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// checkRestore checks that cfg describes the board of s.
func checkRestore(cfg Config, s *Snapshot) error {
	switch {
	case cfg.MemoryBytes != s.MemoryBytes:
		return fmt.Errorf("snapshot has %d bytes of RAM, the configuration %d", s.MemoryBytes, cfg.MemoryBytes)
	case cfg.VCPUs != len(s.CPUs):
		return fmt.Errorf("snapshot has %d vCPUs, the configuration %d", len(s.CPUs), cfg.VCPUs)
	case len(cfg.Devices) != len(s.Devices):
		return fmt.Errorf("snapshot has %d virtio devices, the configuration %d", len(s.Devices), len(cfg.Devices))
	}
	return nil
}

func (m *Machine) restore(s *Snapshot) error {
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

// PagerStats returns the counters of a lazy restore, zero for a machine
// that was booted or restored from a full copy.
func (m *Machine) PagerStats() PagerStats {
	if m.lazy == nil {
		return PagerStats{}
	}
	return m.lazy.snapshotStats()
}

// MemorySize returns the guest RAM size in bytes.
func (m *Machine) MemorySize() uint64 { return m.ram.size() }

// ReadAt copies guest RAM at offset off into p, as io.ReaderAt does. During a lazy restore
// this pages in what it reads. The machine should be paused.
func (m *Machine) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || uint64(off) >= m.ram.size() {
		return 0, io.EOF
	}
	if m.lazy != nil {
		length := min(uint64(len(p)), m.ram.size()-uint64(off))
		if err := m.lazy.ensure(uint64(off), length); err != nil {
			return 0, err
		}
	}
	n := copy(p, m.ram.mem[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// DirtyPages returns a bitmap with one bit per 4 KiB page of guest RAM that
// was written since the machine started or since the previous call: by the
// guest (KVM's dirty log) or by the devices (virtio DMA). It resets both
// logs. The machine should be paused.
func (m *Machine) DirtyPages() ([]uint64, error) {
	if os.Getpagesize() != virtio.PageSize {
		return nil, fmt.Errorf("dirty tracking needs %d-byte host pages, this host has %d", virtio.PageSize, os.Getpagesize())
	}
	pages := m.ram.size() / virtio.PageSize
	bitmap := make([]uint64, (pages+63)/64)
	if err := m.vm.GetDirtyLog(ramSlot, bitmap); err != nil {
		return nil, err
	}
	devices := m.mem.TakeDirtyBitmap()
	for i := range bitmap {
		if i < len(devices) {
			bitmap[i] |= devices[i]
		}
	}
	return bitmap, nil
}
