// Package virtio implements the device side of virtio 1.x over the
// virtio-mmio transport (register layout version 2) with split virtqueues,
// and three devices: console with multiport (device ID 3), block (2) and
// entropy (4).
//
// The package does not depend on KVM. The VMM core creates a Memory over the
// guest RAM mapping, an InterruptLine per device, and one Transport per
// device, and routes each MMIO exit inside the device's 0x200-byte window to
// Transport.HandleMMIO.
//
// # Threading
//
// HandleMMIO may be called from any goroutine, usually the vCPU thread that
// exited, and from several vCPUs at once. Register accesses are serialized by
// a mutex in the Transport. A write to QueueNotify runs the device's queue
// handler on the calling goroutine after that mutex is released. Each device
// serializes its queue handling with its own mutex, so a handler can also run
// at the same time on a host goroutine (the console does this when the host
// writes to or reads from a port). Lock order is Transport, then device, then
// queue, then interrupt status. Device code never takes the Transport's lock,
// which is what lets a reset wait for a running handler without deadlock.
//
// # Untrusted input
//
// Every address, length, index and flag that the guest controls is validated
// before use. Memory bounds-checks every access against RAM and returns an
// *AccessError instead of panicking. A structural error in a virtqueue (a
// descriptor loop, an index out of range, a ring outside RAM) sets
// DEVICE_NEEDS_RESET in the Status register, raises a configuration change
// interrupt and stops the device until the driver resets it. A well-formed
// chain that carries a malformed request gets an error status (for example
// VIRTIO_BLK_S_IOERR) or is returned unused.
//
// # Capture and resume
//
// Transport.Save returns a TransportState with the registers, the queue
// indices and the device's own state; its MarshalBinary encoding is versioned
// and deterministic. Transport.Restore loads it into a fresh Transport and
// device before the VM resumes. Memory records the pages the device side
// wrote, because KVM's dirty log does not see writes made by the VMM.
package virtio
