package vm

import (
	"errors"
	"sync"

	"github.com/spore-vm/spore/vm/virtio"
)

// pauser parks vCPU threads outside KVM_RUN at one barrier, so the VM's
// state can be read and written consistently.
//
// A vCPU parks only after a KVM_RUN that returned EINTR. KVM completes a
// pending MMIO read in that call before it returns, so a parked vCPU has no
// half-done exit and its registers are final.
type pauser struct {
	mu   sync.Mutex
	cond *sync.Cond
	// requested is true from Pause until Resume. Guarded by mu.
	requested bool
	// parked counts the vCPUs waiting in park. Guarded by mu.
	parked int
}

func (p *pauser) init() { p.cond = sync.NewCond(&p.mu) }

// isRequested reports whether the vCPUs should park.
func (p *pauser) isRequested() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requested
}

// park blocks the calling vCPU thread while a pause is requested and the
// machine has not stopped.
func (p *pauser) park(stopped <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.parked++
	p.cond.Broadcast()
	for p.requested && !isClosed(stopped) {
		p.cond.Wait()
	}
	p.parked--
}

// wake releases parked vCPUs, for a resume or a stop.
func (p *pauser) wake() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cond.Broadcast()
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// ErrStopped is returned by Pause when the machine stopped first.
var ErrStopped = errors.New("machine stopped")

// Pause stops every vCPU outside the guest and returns when all of them are
// parked. Then it holds the devices that touch guest memory from host
// goroutines (virtio.Holder), so guest memory, device state and interrupt
// lines stay as they are until Resume. Pause must be called while Run
// runs.
func (m *Machine) Pause() error {
	m.pause.mu.Lock()
	m.pause.requested = true
	m.pause.mu.Unlock()

	for _, c := range m.vcpus {
		c.kick()
	}

	m.pause.mu.Lock()
	defer m.pause.mu.Unlock()
	for m.pause.parked < len(m.vcpus) {
		if isClosed(m.stopped) {
			return ErrStopped
		}
		m.pause.cond.Wait()
	}
	for _, d := range m.cfg.Devices {
		if h, ok := d.(virtio.Holder); ok {
			h.Hold()
		}
	}
	m.logger.Debug("vCPUs paused", "count", len(m.vcpus))
	return nil
}

// Resume lets paused vCPUs enter the guest again.
func (m *Machine) Resume() {
	for _, d := range m.cfg.Devices {
		if h, ok := d.(virtio.Holder); ok {
			h.Release()
		}
	}
	m.pause.mu.Lock()
	m.pause.requested = false
	m.pause.cond.Broadcast()
	m.pause.mu.Unlock()
	m.logger.Debug("vCPUs resumed", "count", len(m.vcpus))
}
