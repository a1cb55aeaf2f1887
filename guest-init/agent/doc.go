// Package agent implements spore's exec agent protocol: the framed,
// versioned byte protocol between the host and the init process of a guest,
// the guest-side Server that runs processes, and the host-side Client.
//
// The transport is one byte stream: a virtio-console port in a guest, a
// pipe or socket pair in tests. Every frame carries a CRC-32C over its
// header and body, so a reader that finds garbage (a frame cut by a VM
// capture, bytes from a previous host process) skips to the next valid frame
// instead of failing the stream.
//
// Sessions are multiplexed by a host-chosen ID. Output and input bytes are
// numbered by stream offset and kept by the sender until the receiver
// acknowledges them. So a new Client that connects to the same Server after
// a resume can attach to running sessions and continue each stream at a
// known offset, without losing or repeating bytes. docs/guest.md specifies
// the wire format and these guarantees.
package agent
