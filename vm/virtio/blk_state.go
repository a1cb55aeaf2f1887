package virtio

import "fmt"

const (
	blkStateMagic   = "VBLK"
	blkStateVersion = 1
)

// BlockState is the saved state of a Block device. Requests always
// complete before Notify returns, so the state is the configuration the
// guest kernel cached, which the restored device must match.
type BlockState struct {
	// Capacity is the disk size in sectors.
	Capacity uint64
	// ReadOnly is BlockConfig.ReadOnly.
	ReadOnly bool
	// ID is BlockConfig.ID.
	ID string
}

// State returns the device's BlockState.
func (b *Block) State() BlockState {
	return BlockState{Capacity: b.capacity, ReadOnly: b.cfg.ReadOnly, ID: b.cfg.ID}
}

// SetState checks s against this device. A disk of another size, access
// mode or ID is an error, because the guest kernel cached those values.
func (b *Block) SetState(s BlockState) error {
	switch {
	case s.Capacity != b.capacity:
		return fmt.Errorf("virtio block: saved disk has %d sectors, this disk has %d; attach the disk the VM was captured with", s.Capacity, b.capacity)
	case s.ReadOnly != b.cfg.ReadOnly:
		return fmt.Errorf("virtio block: saved disk has read-only=%t, this disk has read-only=%t", s.ReadOnly, b.cfg.ReadOnly)
	case s.ID != b.cfg.ID:
		return fmt.Errorf("virtio block: saved disk has ID %q, this disk has ID %q", s.ID, b.cfg.ID)
	}
	return nil
}

// SaveState encodes the device's BlockState.
func (b *Block) SaveState() ([]byte, error) {
	s := b.State()
	return s.MarshalBinary()
}

// RestoreState decodes a state from SaveState and checks it with SetState.
func (b *Block) RestoreState(state []byte) error {
	var s BlockState
	if err := s.UnmarshalBinary(state); err != nil {
		return err
	}
	return b.SetState(s)
}

// MarshalBinary encodes s in the versioned, deterministic format that
// UnmarshalBinary reads.
func (s *BlockState) MarshalBinary() ([]byte, error) {
	e := newStateEncoder(blkStateMagic, blkStateVersion)
	e.u64(s.Capacity)
	e.boolean(s.ReadOnly)
	e.bytes([]byte(s.ID))
	return e.buf, nil
}

// UnmarshalBinary decodes data written by MarshalBinary, rejecting
// unknown versions, an ID longer than BlockIDSize and trailing bytes.
func (s *BlockState) UnmarshalBinary(data []byte) error {
	d, version := newStateDecoder("block device state", blkStateMagic, data)
	if d.err == nil && version != blkStateVersion {
		return fmt.Errorf("virtio: block device state has format version %d; this build reads version %d", version, blkStateVersion)
	}
	out := BlockState{Capacity: d.u64(), ReadOnly: d.boolean(), ID: string(d.bytes(BlockIDSize))}
	if err := d.finish(); err != nil {
		return err
	}
	*s = out
	return nil
}
