package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// ConsoleFeatureMultiport is VIRTIO_CONSOLE_F_MULTIPORT.
const ConsoleFeatureMultiport = 1 << 1

// Control message events (struct virtio_console_control.event).
const (
	consoleDeviceReady = 0
	consolePortAdd     = 1 // VIRTIO_CONSOLE_DEVICE_ADD in the specification
	consolePortRemove  = 2
	consolePortReady   = 3
	consoleConsolePort = 4
	consoleResize      = 5
	consolePortOpen    = 6
	consolePortName    = 7

	consoleControlSize = 8 // le32 id, le16 event, le16 value
)

const (
	consoleQueueSize = 128
	// MaxConsolePorts is the most ports a Console accepts.
	MaxConsolePorts = 32
	// MaxConsolePortName is the longest port name in bytes.
	MaxConsolePortName = 255
	// ConsoleBufferLimit is the maximum number of bytes buffered per port
	// and direction before the console applies back-pressure: a host Write
	// blocks, or the device stops taking guest buffers from the transmit
	// queue.
	ConsoleBufferLimit = 64 << 10
	// consoleMaxChain is the largest transmit buffer the console accepts.
	// Linux sends at most 32 KiB per buffer; larger chains are returned
	// unread and logged.
	consoleMaxChain = 1 << 20
)

// ConsolePortConfig describes one port of a Console.
type ConsolePortConfig struct {
	// Name is sent to the guest with PORT_NAME; Linux then creates
	// /dev/virtio-ports/NAME. Empty means no name.
	Name string
	// Console marks the port as a console (hvc) with CONSOLE_PORT. At
	// most one port may be the console.
	Console bool
}

// DefaultConsolePorts returns spore's port layout: port 0 is the console
// (hvc0, the guest kernel log) and port 1 is the agent port named
// "org.spore.agent".
func DefaultConsolePorts() []ConsolePortConfig {
	return []ConsolePortConfig{{Console: true}, {Name: "org.spore.agent"}}
}

// Console is the virtio console device (device ID 3) with
// VIRTIO_CONSOLE_F_MULTIPORT. Each port carries a byte stream in both
// directions; the host side of port i is Port(i), an io.ReadWriter.
//
// With multiport, queues 0 and 1 are port 0's receive and transmit queues,
// 2 and 3 the control queues, and port i > 0 uses queues 2+2i and 3+2i. A
// driver that does not negotiate multiport gets port 0 only, as a console.
//
// Guest buffers are handled on the goroutine that notifies a queue and on
// the goroutines that call Port.Read and Port.Write, serialized by one
// mutex.
type Console struct {
	log   *deviceLogger
	ports []*Port

	mu        sync.Mutex
	wake      *sync.Cond // signalled when buffered data moves or the console closes
	queues    []*Queue   // nil while the device is not active
	multiport bool
	ready     bool     // the driver sent DEVICE_READY
	control   [][]byte // control messages waiting for a guest buffer
	closed    bool
	// held is true between Hold and Release: nothing touches guest memory
	// or raises an interrupt then, and host writes stay buffered.
	held bool
}

// NewConsole returns a console with the given ports. logger receives driver
// errors; nil means slog.Default().
func NewConsole(ports []ConsolePortConfig, logger *slog.Logger) (*Console, error) {
	if len(ports) == 0 || len(ports) > MaxConsolePorts {
		return nil, fmt.Errorf("virtio console: %d ports configured, need 1 to %d", len(ports), MaxConsolePorts)
	}
	consoles := 0
	names := map[string]bool{}
	for i, p := range ports {
		if p.Console {
			consoles++
		}
		if len(p.Name) > MaxConsolePortName {
			return nil, fmt.Errorf("virtio console: port %d name is %d bytes long, the limit is %d", i, len(p.Name), MaxConsolePortName)
		}
		if p.Name == "" {
			continue
		}
		for _, r := range p.Name {
			if r == 0 || r == '/' {
				return nil, fmt.Errorf("virtio console: port %d name %q contains NUL or '/', which Linux cannot use in a device path", i, p.Name)
			}
		}
		if names[p.Name] {
			return nil, fmt.Errorf("virtio console: port name %q is used twice", p.Name)
		}
		names[p.Name] = true
	}
	if consoles > 1 {
		return nil, fmt.Errorf("virtio console: %d ports are marked as console, at most one may be", consoles)
	}
	c := &Console{log: newDeviceLogger(logger, "virtio_device", DeviceIDConsole)}
	c.wake = sync.NewCond(&c.mu)
	for i, cfg := range ports {
		c.ports = append(c.ports, &Port{console: c, id: uint32(i), cfg: cfg})
	}
	return c, nil
}

// Port returns the host side of port id, or nil if there is no such port.
func (c *Console) Port(id int) *Port {
	if id < 0 || id >= len(c.ports) {
		return nil
	}
	return c.ports[id]
}

// Close wakes every blocked Read and Write. After Close, reads return the
// data still buffered and then io.EOF, and writes fail. The device keeps
// serving the guest, which observes no change.
func (c *Console) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.wake.Broadcast()
	return nil
}

// broadcast wakes every goroutine that waits in Read or Write.
func (c *Console) broadcast() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wake.Broadcast()
}

// DeviceID returns DeviceIDConsole.
func (c *Console) DeviceID() uint32 { return DeviceIDConsole }

// Features returns VIRTIO_CONSOLE_F_MULTIPORT.
func (c *Console) Features() uint64 { return ConsoleFeatureMultiport }

// QueueMaxSizes returns two queues per port plus the two control queues.
func (c *Console) QueueMaxSizes() []uint16 {
	sizes := make([]uint16, 2*(len(c.ports)+1))
	for i := range sizes {
		sizes[i] = consoleQueueSize
	}
	return sizes
}

// ReadConfig reads virtio_console_config: cols and rows are zero
// (VIRTIO_CONSOLE_F_SIZE is not offered) and max_nr_ports is the port
// count.
func (c *Console) ReadConfig(offset uint64, p []byte) {
	var cfg [12]byte
	binary.LittleEndian.PutUint32(cfg[4:], uint32(len(c.ports)))
	readConfigBytes(cfg[:], offset, p)
}

// WriteConfig ignores the write: emerg_wr is only writable with
// VIRTIO_CONSOLE_F_EMERG_WRITE, which is not offered.
func (c *Console) WriteConfig(offset uint64, p []byte) {}

// rxQueue and txQueue return the receive (host to guest) and transmit
// queue of a port, nil when the queue is not usable.
func (c *Console) rxQueue(id uint32) *Queue { return c.portQueue(id, 0) }
func (c *Console) txQueue(id uint32) *Queue { return c.portQueue(id, 1) }

func (c *Console) portQueue(id uint32, dir int) *Queue {
	if c.queues == nil || (id > 0 && !c.multiport) {
		return nil
	}
	index := dir
	if id > 0 {
		index = 2 + 2*int(id) + dir
	}
	return c.queues[index]
}

// Activate starts the device. It does not touch port state, so that
// Restore can load that state first.
func (c *Console) Activate(a *Activation) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	multiport := a.Features&ConsoleFeatureMultiport != 0
	if a.Queues[0] == nil || a.Queues[1] == nil {
		return errors.New("console: the driver did not enable port 0's queues 0 and 1")
	}
	if multiport && (a.Queues[2] == nil || a.Queues[3] == nil) {
		return errors.New("console: the driver negotiated multiport but did not enable control queues 2 and 3")
	}
	c.queues = a.Queues
	c.multiport = multiport
	return nil
}

// Reset stops the device. Data buffered in either direction is kept and
// flows again after the driver sets the device up anew.
func (c *Console) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queues = nil
	c.multiport = false
	c.ready = false
	c.control = nil
	for _, p := range c.ports {
		p.added, p.ready, p.guestOpen = false, false, false
	}
	c.wake.Broadcast()
}

// Notify handles a notification: new control messages, new receive
// buffers or new transmitted data.
func (c *Console) Notify(queue int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queues == nil || c.held {
		return
	}
	if c.multiport && queue == 3 {
		c.readControl()
	}
	c.pump()
}

// Hold stops the console from touching guest memory and raising
// interrupts until Release. Host writes stay buffered meanwhile, and
// transmitted guest buffers stay in their queue.
func (c *Console) Hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = true
}

// Release ends a Hold. It handles the control messages and moves the data
// that arrived meanwhile, because a notification during the hold was
// dropped.
func (c *Console) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	if c.queues == nil {
		return
	}
	if c.multiport {
		c.readControl()
	}
	c.pump()
}

// pump moves everything that can move: control messages to the guest,
// buffered host data into receive buffers and transmitted data into host
// buffers. Then it raises the interrupts the driver asked for.
func (c *Console) pump() {
	if c.queues == nil || c.held {
		return
	}
	c.sendControl()
	for _, p := range c.ports {
		p.deliver()
		p.collect()
	}
	for _, q := range c.queues {
		if q != nil {
			q.Signal()
		}
	}
}

// readControl handles the control messages the driver sent.
func (c *Console) readControl() {
	q := c.queues[3]
	for {
		chain, err := q.Pop()
		if err != nil || chain == nil {
			return
		}
		var msg [consoleControlSize]byte
		if chain.ReadableLen() < consoleControlSize {
			c.log.warn("virtio console: control message is too short; ignoring it", "head", chain.Head, "bytes", chain.ReadableLen())
		} else if err := chain.ReadAt(msg[:], 0); err != nil {
			c.log.warn("virtio console: reading control message failed", "head", chain.Head, "error", err)
		} else {
			c.handleControl(binary.LittleEndian.Uint32(msg[0:]), binary.LittleEndian.Uint16(msg[4:]), binary.LittleEndian.Uint16(msg[6:]))
		}
		if err := q.Push(chain, 0); err != nil {
			return
		}
	}
}

func (c *Console) handleControl(id uint32, event, value uint16) {
	if event == consoleDeviceReady {
		if value != 1 {
			c.log.error("virtio console: the driver failed to set up the device", "value", value)
			return
		}
		c.ready = true
		for _, p := range c.ports {
			if !p.added {
				p.added = true
				c.queueControl(p.id, consolePortAdd, 0, nil)
			}
		}
		return
	}

	if id >= uint32(len(c.ports)) {
		c.log.warn("virtio console: control message for a port that does not exist", "port", id, "event", event)
		return
	}
	p := c.ports[id]
	switch event {
	case consolePortReady:
		if value != 1 {
			c.log.error("virtio console: the driver failed to add a port", "port", id)
			p.ready = false
			return
		}
		if p.ready {
			return
		}
		p.ready = true
		if p.cfg.Console {
			c.queueControl(id, consoleConsolePort, 1, nil)
		}
		if p.cfg.Name != "" {
			c.queueControl(id, consolePortName, 1, []byte(p.cfg.Name))
		}
		c.queueControl(id, consolePortOpen, boolValue(!p.hostClosed), nil)
	case consolePortOpen:
		p.guestOpen = value == 1
	default:
		c.log.warn("virtio console: unexpected control message from the driver", "port", id, "event", event, "value", value)
	}
}

func boolValue(b bool) uint16 {
	if b {
		return 1
	}
	return 0
}

// queueControl adds a control message for the guest. The queue is bounded
// because a driver that repeats PORT_READY without giving control buffers
// would otherwise grow it forever.
func (c *Console) queueControl(id uint32, event, value uint16, payload []byte) {
	if len(c.control) >= maxControlMessages {
		c.log.error("virtio console: too many control messages wait for guest buffers; dropping one",
			"port", id, "event", event, "limit", maxControlMessages)
		return
	}
	msg := make([]byte, consoleControlSize, consoleControlSize+len(payload))
	binary.LittleEndian.PutUint32(msg[0:], id)
	binary.LittleEndian.PutUint16(msg[4:], event)
	binary.LittleEndian.PutUint16(msg[6:], value)
	c.control = append(c.control, append(msg, payload...))
}

// sendControl writes waiting control messages into the driver's control
// receive buffers, one message per buffer.
func (c *Console) sendControl() {
	if !c.multiport {
		return
	}
	q := c.queues[2]
	for len(c.control) > 0 {
		chain, err := q.Pop()
		if err != nil || chain == nil {
			return
		}
		msg := c.control[0]
		written := uint32(0)
		if uint64(len(msg)) > chain.WritableLen() {
			c.log.error("virtio console: control receive buffer is too small; dropping the message",
				"bytes", len(msg), "buffer_bytes", chain.WritableLen(), "event", binary.LittleEndian.Uint16(msg[4:]))
		} else if err := chain.WriteAt(msg, 0); err != nil {
			c.log.warn("virtio console: writing control message failed", "error", err)
		} else {
			written = uint32(len(msg))
		}
		c.control = c.control[1:]
		if err := q.Push(chain, written); err != nil {
			return
		}
	}
}
