package virtio

import (
	"context"
	"io"
)

// Port is the host side of one console port: Read returns the bytes the
// guest wrote, Write sends bytes to the guest. Both block for
// back-pressure and lose no data: Write returns once every byte is
// buffered in the device, and bytes stay buffered until the guest has
// opened the port and given receive buffers. Read, Write and the other
// methods are safe for concurrent use.
//
// NOTE: Linux's console driver waits with the vCPU spinning until the host
// takes each console buffer, so the VMM must keep reading the console port
// or the guest stops when ConsoleBufferLimit bytes are waiting.
type Port struct {
	console *Console
	id      uint32
	cfg     ConsolePortConfig

	// The fields below are guarded by console.mu.
	added      bool   // PORT_ADD was queued for the guest
	ready      bool   // the guest sent PORT_READY
	guestOpen  bool   // the guest has the port open (PORT_OPEN)
	hostClosed bool   // the host side is disconnected (SetHostOpen(false))
	toGuest    []byte // host bytes not yet in guest buffers
	toHost     []byte // guest bytes the host has not read
}

// ID returns the port number.
func (p *Port) ID() int { return int(p.id) }

// Name returns the port name, empty for none.
func (p *Port) Name() string { return p.cfg.Name }

// GuestOpen reports whether the guest can receive data on the port: with
// multiport it has opened the port, without multiport port 0 is always
// open once the driver is running.
func (p *Port) GuestOpen() bool {
	c := p.console
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.deliverable()
}

func (p *Port) deliverable() bool {
	c := p.console
	if c.queues == nil {
		return false
	}
	if !c.multiport {
		return p.id == 0
	}
	return p.ready && p.guestOpen
}

// HostOpen reports whether the host side of the port is connected, as
// last set with SetHostOpen. A new port is connected.
func (p *Port) HostOpen() bool {
	c := p.console
	c.mu.Lock()
	defer c.mu.Unlock()
	return !p.hostClosed
}

// SetHostOpen sends the guest a PORT_OPEN control message that reports
// whether the host side of the port is connected. While it is disconnected,
// Linux returns end-of-file to guest reads once they have drained the
// delivered data, and blocks guest writes. The host's Read and Write keep
// working: bytes written are delivered as usual.
func (p *Port) SetHostOpen(open bool) {
	c := p.console
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.hostClosed == !open {
		return
	}
	p.hostClosed = !open
	if c.multiport && p.ready {
		c.queueControl(p.id, consolePortOpen, boolValue(open), nil)
		c.pump()
	}
}

// Write buffers b for the guest and returns len(b), blocking while
// ConsoleBufferLimit bytes are already waiting. After Console.Close it
// returns io.ErrClosedPipe and the number of bytes buffered.
func (p *Port) Write(b []byte) (int, error) {
	return p.WriteContext(context.Background(), b)
}

// WriteContext is Write that also stops waiting when ctx is done. It then
// returns ctx.Err() and the number of bytes buffered; those bytes still
// reach the guest.
func (p *Port) WriteContext(ctx context.Context, b []byte) (int, error) {
	c := p.console
	stop := context.AfterFunc(ctx, c.broadcast)
	defer stop()

	c.mu.Lock()
	defer c.mu.Unlock()
	written := 0
	for written < len(b) {
		for !c.closed && ctx.Err() == nil && len(p.toGuest) >= ConsoleBufferLimit {
			c.wake.Wait()
		}
		if c.closed {
			return written, io.ErrClosedPipe
		}
		if err := ctx.Err(); err != nil {
			return written, err
		}
		n := min(len(b)-written, ConsoleBufferLimit-len(p.toGuest))
		p.toGuest = append(p.toGuest, b[written:written+n]...)
		written += n
		c.pump()
	}
	return written, nil
}

// Read returns bytes the guest wrote, blocking until there are some.
// After Console.Close it returns the bytes still buffered, then io.EOF.
func (p *Port) Read(b []byte) (int, error) {
	return p.ReadContext(context.Background(), b)
}

// ReadContext is Read that also stops waiting when ctx is done, returning
// ctx.Err() if no bytes had arrived.
func (p *Port) ReadContext(ctx context.Context, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c := p.console
	stop := context.AfterFunc(ctx, c.broadcast)
	defer stop()

	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p.toHost) == 0 && !c.closed && ctx.Err() == nil {
		c.wake.Wait()
	}
	if len(p.toHost) == 0 {
		if err := ctx.Err(); err != nil && !c.closed {
			return 0, err
		}
		return 0, io.EOF
	}
	n := copy(b, p.toHost)
	p.toHost = p.toHost[n:]
	if len(p.toHost) == 0 {
		p.toHost = nil
	}
	// Room was made, so take more transmitted data from the guest.
	c.pump()
	return n, nil
}

// Buffered returns the bytes waiting in each direction: written by the
// host but not yet delivered, and transmitted by the guest but not yet
// read.
func (p *Port) Buffered() (toGuest, toHost int) {
	c := p.console
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(p.toGuest), len(p.toHost)
}

// deliver copies buffered host bytes into the port's receive buffers.
func (p *Port) deliver() {
	q := p.console.rxQueue(p.id)
	if q == nil || !p.deliverable() {
		return
	}
	moved := false
	for len(p.toGuest) > 0 {
		chain, err := q.Pop()
		if err != nil || chain == nil {
			break
		}
		n := uint64(0)
		if len(chain.Readable) > 0 {
			p.console.log.warn("virtio console: receive buffer has device-readable parts; returning it unused", "port", p.id, "head", chain.Head)
		} else {
			n = min(chain.WritableLen(), uint64(len(p.toGuest)))
			if err := chain.WriteAt(p.toGuest[:n], 0); err != nil {
				p.console.log.warn("virtio console: writing receive buffer failed", "port", p.id, "error", err)
				n = 0
			}
		}
		if err := q.Push(chain, uint32(n)); err != nil {
			break
		}
		p.toGuest = p.toGuest[n:]
		moved = moved || n > 0
	}
	if len(p.toGuest) == 0 {
		p.toGuest = nil
	}
	if moved {
		p.console.wake.Broadcast()
	}
}

// collect takes transmitted guest buffers while the host-side buffer has
// room. A buffer is taken whole, so toHost can exceed ConsoleBufferLimit
// by up to one buffer.
func (p *Port) collect() {
	q := p.console.txQueue(p.id)
	if q == nil {
		return
	}
	moved := false
	for len(p.toHost) < ConsoleBufferLimit {
		chain, err := q.Pop()
		if err != nil || chain == nil {
			break
		}
		n := chain.ReadableLen()
		switch {
		case n > consoleMaxChain:
			p.console.log.warn("virtio console: transmit buffer is larger than the limit; returning it unread",
				"port", p.id, "bytes", n, "limit", consoleMaxChain)
		default:
			start := len(p.toHost)
			p.toHost = append(p.toHost, make([]byte, n)...)
			if err := chain.ReadAt(p.toHost[start:], 0); err != nil {
				p.console.log.warn("virtio console: reading transmit buffer failed", "port", p.id, "error", err)
				p.toHost = p.toHost[:start]
			}
			moved = moved || n > 0
		}
		if err := q.Push(chain, 0); err != nil {
			break
		}
	}
	if moved {
		p.console.wake.Broadcast()
	}
}
