package virtio

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

const (
	rngQueueSize = 64
	// rngMaxFill is the most bytes the entropy device writes into one
	// request. Larger buffers are filled partially and report the smaller
	// length in the used ring, which the virtio entropy device allows.
	rngMaxFill = 64 << 10

	rngStateMagic   = "VRNG"
	rngStateVersion = 1
)

// Entropy is the virtio entropy device (device ID 4). It fills every
// device-writable buffer of its one request queue with random bytes. It has
// no feature bits and no configuration space.
type Entropy struct {
	source io.Reader
	log    *deviceLogger

	mu    sync.Mutex
	queue *Queue
}

// NewEntropy returns an entropy device that reads from source, or from
// crypto/rand.Reader (getrandom(2) on Linux) when source is nil. logger
// receives read errors; nil means slog.Default().
func NewEntropy(source io.Reader, logger *slog.Logger) *Entropy {
	if source == nil {
		source = rand.Reader
	}
	return &Entropy{source: source, log: newDeviceLogger(logger, "virtio_device", DeviceIDEntropy)}
}

// DeviceID returns DeviceIDEntropy.
func (r *Entropy) DeviceID() uint32 { return DeviceIDEntropy }

// Features returns 0: the entropy device has no device-specific features.
func (r *Entropy) Features() uint64 { return 0 }

// QueueMaxSizes returns the size of the request queue.
func (r *Entropy) QueueMaxSizes() []uint16 { return []uint16{rngQueueSize} }

// ReadConfig zeroes p: the device has no configuration space.
func (r *Entropy) ReadConfig(offset uint64, p []byte) { clear(p) }

// WriteConfig ignores the write.
func (r *Entropy) WriteConfig(offset uint64, p []byte) {}

// Activate starts serving the request queue.
func (r *Entropy) Activate(a *Activation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.Queues[0] == nil {
		return fmt.Errorf("entropy device: the driver did not enable the request queue")
	}
	r.queue = a.Queues[0]
	return nil
}

// Reset stops the device.
func (r *Entropy) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = nil
}

// Notify fills every available request.
func (r *Entropy) Notify(queue int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queue == nil || queue != 0 {
		return
	}
	for {
		chain, err := r.queue.Pop()
		if err != nil || chain == nil {
			break
		}
		n := r.fill(chain)
		if err := r.queue.Push(chain, n); err != nil {
			break
		}
	}
	r.queue.Signal()
}

// fill writes random bytes into the writable buffers of chain and returns
// the number written. A request with device-readable buffers is malformed
// and is returned with nothing written.
func (r *Entropy) fill(chain *Chain) uint32 {
	if len(chain.Readable) > 0 {
		r.log.warn("virtio entropy: request has device-readable buffers; returning it unfilled", "head", chain.Head)
		return 0
	}
	want := min(chain.WritableLen(), rngMaxFill)
	parts, err := chain.WritableSlices(0, want)
	if err != nil {
		r.log.warn("virtio entropy: request buffers are not accessible", "head", chain.Head, "error", err)
		return 0
	}
	var written uint32
	for _, p := range parts {
		n, err := io.ReadFull(r.source, p)
		written += uint32(n)
		if err != nil {
			r.log.error("virtio entropy: reading random bytes failed", "error", err)
			break
		}
	}
	return written
}

// SaveState returns the device state, which holds only a format header:
// the queue positions live in the TransportState.
func (r *Entropy) SaveState() ([]byte, error) {
	return newStateEncoder(rngStateMagic, rngStateVersion).buf, nil
}

// RestoreState checks a state from SaveState.
func (r *Entropy) RestoreState(state []byte) error {
	d, version := newStateDecoder("entropy device state", rngStateMagic, state)
	if d.err == nil && version != rngStateVersion {
		return fmt.Errorf("virtio: entropy device state has format version %d; this build reads version %d", version, rngStateVersion)
	}
	return d.finish()
}
