package virtio

// Device IDs of the devices in this package (virtio 1.2, "Device Types").
const (
	DeviceIDBlock   = 2
	DeviceIDConsole = 3
	DeviceIDEntropy = 4
)

// Feature bits that the transport handles for every device.
const (
	FeatureIndirectDesc = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx     = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1     = 1 << 32 // VIRTIO_F_VERSION_1
)

// transportFeatures are offered for every device in addition to the
// device's own feature bits.
const transportFeatures = FeatureIndirectDesc | FeatureEventIdx | FeatureVersion1

// InterruptLine is the device's interrupt wire to the guest's interrupt
// controller, provided by the VMM.
//
// The Transport calls SetLevel(true) every time it sets a bit in the
// InterruptStatus register and SetLevel(false) when the driver's
// InterruptACK clears the last bit. A level-triggered implementation
// (KVM_IRQ_LINE) drives the line with the value, and must accept
// SetLevel(true) while the line is already high. An edge-triggered one
// (an irqfd) signals on true and ignores false.
//
// SetLevel is called from vCPU threads and from device goroutines, with an
// internal lock of the Transport held: it must be safe for concurrent use
// and must not call back into the Transport.
type InterruptLine interface {
	SetLevel(asserted bool)
}

// Activation is the set of queues and negotiated features that a device
// receives when the driver sets DRIVER_OK.
type Activation struct {
	// Memory is guest RAM.
	Memory *Memory
	// Queues has one entry per queue of the device, nil where the driver
	// did not set QueueReady.
	Queues []*Queue
	// Features is the feature set the driver accepted, transport bits
	// included.
	Features uint64
	// ConfigChanged raises a configuration change interrupt and bumps
	// ConfigGeneration. Call it after changing the configuration space.
	ConfigChanged func()
}

// Holder is a device that touches guest memory from host goroutines, not
// only when a vCPU notifies it (the console delivers host writes and takes
// transmitted data whenever the host reads or writes a port). Hold stops
// that, and the interrupts it raises, until Release. A machine holds its
// devices while it is paused, so that a snapshot records guest memory,
// queue state and interrupt state of one moment.
type Holder interface {
	// Hold returns after any running transfer has finished.
	Hold()
	// Release moves what waited during the hold.
	Release()
}

// Device is the device-type half of a virtio device; Transport is the
// other half. Implementations must be safe for concurrent use: the
// Transport calls Notify without holding its own lock.
type Device interface {
	// DeviceID returns the virtio device ID.
	DeviceID() uint32
	// Features returns the device-specific feature bits offered to the
	// driver. The Transport adds VERSION_1, INDIRECT_DESC and EVENT_IDX.
	Features() uint64
	// QueueMaxSizes returns the maximum size of each queue; its length is
	// the number of queues.
	QueueMaxSizes() []uint16
	// ReadConfig fills p from the configuration space at offset. Bytes
	// beyond the configuration space read as zero.
	ReadConfig(offset uint64, p []byte)
	// WriteConfig stores p into the configuration space at offset.
	// Writes to read-only fields are ignored.
	WriteConfig(offset uint64, p []byte)
	// Activate starts the device after the driver set DRIVER_OK, or
	// after Transport.Restore loaded a running device.
	Activate(a *Activation) error
	// Notify handles a driver notification for the queue with the given
	// index. It may run on a vCPU thread.
	Notify(queue int)
	// Reset stops the device and returns it to its initial state. It
	// returns after any running queue handler has finished.
	Reset()
	// SaveState encodes the device-specific state. The VM must be paused.
	SaveState() ([]byte, error)
	// RestoreState loads state from SaveState into a device that was
	// never activated. Transport.Restore calls it before Activate.
	RestoreState(state []byte) error
}
