package virtio

import (
	"fmt"
)

const (
	consoleStateMagic   = "VCON"
	consoleStateVersion = 1

	// maxControlMessages bounds the queued control messages in a decoded
	// state: at most four per port are ever queued.
	maxControlMessages = 4 * MaxConsolePorts
)

// ConsoleState is the saved state of a Console: the multiport handshake
// and the bytes buffered in both directions of every port, so that no data
// is lost across capture and resume.
type ConsoleState struct {
	// DeviceReady is true after the driver sent DEVICE_READY.
	DeviceReady bool
	// Control holds control messages not yet delivered to the guest,
	// each an 8-byte header followed by its payload.
	Control [][]byte
	// Ports has one entry per port, in port order.
	Ports []ConsolePortState
}

// ConsolePortState is the saved state of one console port.
type ConsolePortState struct {
	// Name and Console repeat the port's configuration; Restore checks
	// them against the new device.
	Name    string
	Console bool
	// Added, Ready and GuestOpen track the handshake: PORT_ADD sent,
	// PORT_READY received, and the guest's last PORT_OPEN value.
	Added, Ready, GuestOpen bool
	// HostOpen is the host connection state from Port.SetHostOpen.
	HostOpen bool
	// ToGuest holds host bytes not yet delivered to the guest.
	ToGuest []byte
	// ToHost holds guest bytes the host has not read.
	ToHost []byte
}

// State returns the console's state. The VM must be paused.
func (c *Console) State() ConsoleState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ConsoleState{DeviceReady: c.ready}
	for _, m := range c.control {
		s.Control = append(s.Control, append([]byte(nil), m...))
	}
	for _, p := range c.ports {
		s.Ports = append(s.Ports, ConsolePortState{
			Name: p.cfg.Name, Console: p.cfg.Console,
			Added: p.added, Ready: p.ready, GuestOpen: p.guestOpen, HostOpen: !p.hostClosed,
			ToGuest: append([]byte(nil), p.toGuest...),
			ToHost:  append([]byte(nil), p.toHost...),
		})
	}
	return s
}

// SetState loads s into a console that the driver has not activated. The
// port layout in s must match the console's configuration.
func (c *Console) SetState(s ConsoleState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queues != nil {
		return fmt.Errorf("virtio console: cannot load state into a running device")
	}
	if len(s.Ports) != len(c.ports) {
		return fmt.Errorf("virtio console: saved state has %d ports, this console has %d; create it with the saved port layout", len(s.Ports), len(c.ports))
	}
	for i, ps := range s.Ports {
		cfg := c.ports[i].cfg
		if ps.Name != cfg.Name || ps.Console != cfg.Console {
			return fmt.Errorf("virtio console: saved port %d is (name %q, console %t), this port is (name %q, console %t)",
				i, ps.Name, ps.Console, cfg.Name, cfg.Console)
		}
		if len(ps.ToGuest) > ConsoleBufferLimit || len(ps.ToHost) > ConsoleBufferLimit+consoleMaxChain {
			return fmt.Errorf("virtio console: saved port %d buffers %d and %d bytes, more than the device can hold", i, len(ps.ToGuest), len(ps.ToHost))
		}
	}
	for i, m := range s.Control {
		if len(m) < consoleControlSize {
			return fmt.Errorf("virtio console: saved control message %d has %d bytes, less than its %d-byte header", i, len(m), consoleControlSize)
		}
	}

	c.ready = s.DeviceReady
	c.control = nil
	for _, m := range s.Control {
		c.control = append(c.control, append([]byte(nil), m...))
	}
	for i, ps := range s.Ports {
		p := c.ports[i]
		p.added, p.ready, p.guestOpen = ps.Added, ps.Ready, ps.GuestOpen
		p.hostClosed = !ps.HostOpen
		p.toGuest = append([]byte(nil), ps.ToGuest...)
		p.toHost = append([]byte(nil), ps.ToHost...)
	}
	c.wake.Broadcast()
	return nil
}

// SaveState encodes the console's ConsoleState.
func (c *Console) SaveState() ([]byte, error) {
	s := c.State()
	return s.MarshalBinary()
}

// RestoreState decodes a state from SaveState and loads it.
func (c *Console) RestoreState(state []byte) error {
	var s ConsoleState
	if err := s.UnmarshalBinary(state); err != nil {
		return err
	}
	return c.SetState(s)
}

// MarshalBinary encodes s in the versioned, deterministic format that
// UnmarshalBinary reads.
func (s *ConsoleState) MarshalBinary() ([]byte, error) {
	e := newStateEncoder(consoleStateMagic, consoleStateVersion)
	e.boolean(s.DeviceReady)
	e.u32(uint32(len(s.Control)))
	for _, m := range s.Control {
		e.bytes(m)
	}
	e.u32(uint32(len(s.Ports)))
	for _, p := range s.Ports {
		e.bytes([]byte(p.Name))
		e.boolean(p.Console)
		e.boolean(p.Added)
		e.boolean(p.Ready)
		e.boolean(p.GuestOpen)
		e.boolean(p.HostOpen)
		e.bytes(p.ToGuest)
		e.bytes(p.ToHost)
	}
	return e.buf, nil
}

// UnmarshalBinary decodes data written by MarshalBinary, rejecting
// unknown versions, oversized fields and trailing bytes.
func (s *ConsoleState) UnmarshalBinary(data []byte) error {
	d, version := newStateDecoder("console state", consoleStateMagic, data)
	if d.err == nil && version != consoleStateVersion {
		return fmt.Errorf("virtio: console state has format version %d; this build reads version %d", version, consoleStateVersion)
	}
	var out ConsoleState
	out.DeviceReady = d.boolean()
	for range d.count(maxControlMessages) {
		out.Control = append(out.Control, d.bytes(consoleControlSize+MaxConsolePortName))
	}
	for range d.count(MaxConsolePorts) {
		var p ConsolePortState
		p.Name = string(d.bytes(MaxConsolePortName))
		p.Console = d.boolean()
		p.Added = d.boolean()
		p.Ready = d.boolean()
		p.GuestOpen = d.boolean()
		p.HostOpen = d.boolean()
		p.ToGuest = d.bytes(ConsoleBufferLimit)
		p.ToHost = d.bytes(ConsoleBufferLimit + consoleMaxChain)
		out.Ports = append(out.Ports, p)
	}
	if err := d.finish(); err != nil {
		return err
	}
	*s = out
	return nil
}
