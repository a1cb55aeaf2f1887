package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// MaxQueueSize is the largest queue size of a split virtqueue.
const MaxQueueSize = 32768

// Ring flag bits.
const (
	availFlagNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
)

// ErrNeedsReset is returned by Queue methods after the device entered
// DEVICE_NEEDS_RESET; the device must stop processing until the driver
// resets it.
var ErrNeedsReset = errors.New("device needs reset after a driver error")

// QueueState is the state of one virtqueue: the registers the driver wrote
// and the device's ring positions.
type QueueState struct {
	// Size is the queue size the driver wrote to QueueNum.
	Size uint16
	// Ready is the QueueReady register.
	Ready bool
	// DescAddr, DriverAddr and DeviceAddr are the guest-physical addresses
	// of the descriptor table, the available ring and the used ring.
	DescAddr, DriverAddr, DeviceAddr uint64
	// LastAvailIdx is the available ring index of the next chain the
	// device will take.
	LastAvailIdx uint16
	// UsedIdx is the used ring index the device published last.
	UsedIdx uint16
	// SignalledUsedIdx is UsedIdx at the last used buffer interrupt
	// decision, needed for VIRTIO_F_EVENT_IDX.
	SignalledUsedIdx uint16
}

// interruptSink is the part of the Transport that queues report to.
type interruptSink interface {
	raiseUsed()
	fail(err error)
	broken() bool
}

// Queue is the device side of one split virtqueue. Devices get ready
// queues through Activation. The methods are safe for concurrent use, but
// a device normally serializes its use of a queue with its own lock.
type Queue struct {
	index    int
	mem      *Memory
	sink     interruptSink
	eventIdx bool

	mu     sync.Mutex
	state  QueueState
	walker *chainWalker
}

// checkRingLayout checks that the rings of a queue of the given size lie inside
// RAM with the alignment the split virtqueue format requires.
func checkRingLayout(mem *Memory, s QueueState) error {
	if s.Size == 0 || s.Size > MaxQueueSize || s.Size&(s.Size-1) != 0 {
		return fmt.Errorf("queue size %d is not a power of 2 between 1 and %d", s.Size, MaxQueueSize)
	}
	n := uint64(s.Size)
	rings := []struct {
		name       string
		addr, size uint64
		align      uint64
	}{
		{"descriptor table", s.DescAddr, descSize * n, 16},
		{"available ring", s.DriverAddr, 6 + 2*n, 2},
		{"used ring", s.DeviceAddr, 6 + 8*n, 4},
	}
	for _, r := range rings {
		if r.addr%r.align != 0 {
			return fmt.Errorf("%s address %#x is not aligned to %d bytes", r.name, r.addr, r.align)
		}
		if err := mem.Check(r.addr, r.size); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	return nil
}

func newQueue(index int, mem *Memory, sink interruptSink, s QueueState, features uint64) (*Queue, error) {
	if err := checkRingLayout(mem, s); err != nil {
		return nil, fmt.Errorf("virtqueue %d: %w", index, err)
	}
	return &Queue{
		index:    index,
		mem:      mem,
		sink:     sink,
		eventIdx: features&FeatureEventIdx != 0,
		state:    s,
		walker:   newChainWalker(mem, index, s.DescAddr, s.Size, features&FeatureIndirectDesc != 0),
	}, nil
}

// Index returns the queue's index in the device.
func (q *Queue) Index() int { return q.index }

// Size returns the queue size the driver chose.
func (q *Queue) Size() uint16 { return q.state.Size }

// State returns a copy of the queue's state.
func (q *Queue) State() QueueState {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.state
}

// Pop takes the next available chain. It returns (nil, nil) when the
// driver has made no chain available. A structural error in the ring or
// the chain puts the device into DEVICE_NEEDS_RESET and is returned; after
// that every call returns ErrNeedsReset.
//
// With VIRTIO_F_EVENT_IDX, an empty queue also publishes avail_event so
// that the driver notifies the device for the next chain.
func (q *Queue) Pop() (*Chain, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sink.broken() {
		return nil, ErrNeedsReset
	}
	chain, err := q.pop()
	if err != nil {
		q.sink.fail(err)
		return nil, err
	}
	return chain, nil
}

func (q *Queue) pop() (*Chain, error) {
	s := &q.state
	availIdx, err := q.availIdx()
	if err != nil {
		return nil, err
	}
	if availIdx == s.LastAvailIdx && q.eventIdx {
		// Ask for a notification at the next chain, then look again in
		// case the driver added one before it could see avail_event.
		if err := q.mem.StoreUint16(s.DeviceAddr+4+8*uint64(s.Size), s.LastAvailIdx); err != nil {
			return nil, fmt.Errorf("virtqueue %d: writing avail_event: %w", q.index, err)
		}
		if availIdx, err = q.availIdx(); err != nil {
			return nil, err
		}
	}
	if availIdx == s.LastAvailIdx {
		return nil, nil
	}

	slot := uint64(s.LastAvailIdx % s.Size)
	var b [2]byte
	if err := q.mem.Read(s.DriverAddr+4+2*slot, b[:]); err != nil {
		return nil, fmt.Errorf("virtqueue %d: reading available ring entry %d: %w", q.index, slot, err)
	}
	chain, err := q.walker.walk(binary.LittleEndian.Uint16(b[:]))
	if err != nil {
		return nil, err
	}
	s.LastAvailIdx++
	return chain, nil
}

// availIdx reads the driver's available index and checks that it is at
// most one queue size ahead of the device.
func (q *Queue) availIdx() (uint16, error) {
	s := &q.state
	idx, err := q.mem.LoadUint16(s.DriverAddr + 2)
	if err != nil {
		return 0, fmt.Errorf("virtqueue %d: reading the available index: %w", q.index, err)
	}
	if pending := idx - s.LastAvailIdx; pending > s.Size {
		return 0, fmt.Errorf("virtqueue %d: available index %d is %d entries ahead of the device's %d, more than the queue size %d",
			q.index, idx, pending, s.LastAvailIdx, s.Size)
	}
	return idx, nil
}

// Push returns a chain to the driver through the used ring, with written
// bytes of its writable stream filled in. Call Signal after a batch of
// pushes to interrupt the driver if it asked for that.
func (q *Queue) Push(c *Chain, written uint32) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sink.broken() {
		return ErrNeedsReset
	}
	if uint64(written) > c.WritableLen() {
		written = uint32(c.WritableLen())
	}

	s := &q.state
	var elem [8]byte
	binary.LittleEndian.PutUint32(elem[0:], uint32(c.Head))
	binary.LittleEndian.PutUint32(elem[4:], written)
	slot := uint64(s.UsedIdx % s.Size)
	if err := q.mem.Write(s.DeviceAddr+4+8*slot, elem[:]); err != nil {
		return fmt.Errorf("virtqueue %d: writing used ring entry %d: %w", q.index, slot, err)
	}
	s.UsedIdx++
	if err := q.mem.StoreUint16(s.DeviceAddr+2, s.UsedIdx); err != nil {
		return fmt.Errorf("virtqueue %d: writing the used index: %w", q.index, err)
	}
	return nil
}

// Signal raises a used buffer interrupt if chains were pushed since the
// last Signal and the driver did not suppress the interrupt (with
// VIRTQ_AVAIL_F_NO_INTERRUPT, or with used_event under
// VIRTIO_F_EVENT_IDX).
func (q *Queue) Signal() error {
	q.mu.Lock()
	need, err := q.needInterrupt()
	q.mu.Unlock()
	if err != nil {
		q.sink.fail(err)
		return err
	}
	if need {
		q.sink.raiseUsed()
	}
	return nil
}

func (q *Queue) needInterrupt() (bool, error) {
	s := &q.state
	old, cur := s.SignalledUsedIdx, s.UsedIdx
	if old == cur {
		return false, nil
	}
	s.SignalledUsedIdx = cur
	if q.eventIdx {
		usedEvent, err := q.mem.LoadUint16(s.DriverAddr + 4 + 2*uint64(s.Size))
		if err != nil {
			return false, fmt.Errorf("virtqueue %d: reading used_event: %w", q.index, err)
		}
		// Interrupt if used_event lies in the window of entries published
		// since the last interrupt decision, (old, cur].
		return cur-usedEvent-1 < cur-old, nil
	}
	flags, err := q.mem.LoadUint16(s.DriverAddr)
	if err != nil {
		return false, fmt.Errorf("virtqueue %d: reading available ring flags: %w", q.index, err)
	}
	return flags&availFlagNoInterrupt == 0, nil
}
