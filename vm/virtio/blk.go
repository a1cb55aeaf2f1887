package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Block device feature bits (virtio 1.2, "Block Device").
const (
	BlockFeatureSegMax = 1 << 2 // VIRTIO_BLK_F_SEG_MAX
	BlockFeatureRO     = 1 << 5 // VIRTIO_BLK_F_RO
	BlockFeatureFlush  = 1 << 9 // VIRTIO_BLK_F_FLUSH
)

// Block request types and status values.
const (
	blkTypeIn    = 0
	blkTypeOut   = 1
	blkTypeFlush = 4
	blkTypeGetID = 8

	blkStatusOK     = 0
	blkStatusIOErr  = 1
	blkStatusUnsupp = 2

	blkHeaderSize = 16
)

const (
	// SectorSize is the unit of the capacity and of request sectors.
	SectorSize = 512
	// BlockIDSize is the size of the GET_ID response and the maximum
	// length of a device ID.
	BlockIDSize = 20

	blkQueueSize = 256
	// blkSegMax is the seg_max advertised in the configuration space: the
	// largest chain minus the header and status descriptors.
	blkSegMax = blkQueueSize - 2
	// blkConfigSize covers virtio_blk_config up to the secure erase fields.
	blkConfigSize = 72
)

// BlockConfig configures a Block device.
type BlockConfig struct {
	// Backing stores the disk contents. Its size must be a multiple of
	// SectorSize.
	Backing BlockBacking
	// ReadOnly offers VIRTIO_BLK_F_RO and rejects writes with
	// VIRTIO_BLK_S_IOERR.
	ReadOnly bool
	// ID is returned by GET_ID (the guest's /sys/block/vdX/serial), at
	// most BlockIDSize bytes.
	ID string
}

// Block is the virtio block device (device ID 2) with one request queue.
// It supports reads, writes, flushes and GET_ID; other request types get
// VIRTIO_BLK_S_UNSUPP. Requests run on the goroutine that notifies the
// queue, usually the vCPU thread, so a request that waits on the backing
// blocks that vCPU until the I/O completes.
type Block struct {
	cfg      BlockConfig
	capacity uint64 // in sectors
	log      *deviceLogger

	mu       sync.Mutex
	queue    *Queue
	features uint64
}

// NewBlock returns a block device for cfg. logger receives request errors;
// nil means slog.Default().
func NewBlock(cfg BlockConfig, logger *slog.Logger) (*Block, error) {
	if cfg.Backing == nil {
		return nil, errors.New("virtio block: BlockConfig.Backing is nil; open the disk image first")
	}
	size := cfg.Backing.Size()
	if size < 0 || size%SectorSize != 0 {
		return nil, fmt.Errorf("virtio block: disk size %d bytes is not a multiple of %d; resize the image (truncate -s)", size, SectorSize)
	}
	if len(cfg.ID) > BlockIDSize {
		return nil, fmt.Errorf("virtio block: device ID %q is %d bytes long, the limit is %d", cfg.ID, len(cfg.ID), BlockIDSize)
	}
	return &Block{cfg: cfg, capacity: uint64(size) / SectorSize, log: newDeviceLogger(logger, "virtio_device", DeviceIDBlock)}, nil
}

// DeviceID returns DeviceIDBlock.
func (b *Block) DeviceID() uint32 { return DeviceIDBlock }

// Features returns SEG_MAX, FLUSH and, for a read-only disk, RO.
func (b *Block) Features() uint64 {
	f := uint64(BlockFeatureSegMax | BlockFeatureFlush)
	if b.cfg.ReadOnly {
		f |= BlockFeatureRO
	}
	return f
}

// QueueMaxSizes returns the size of the request queue.
func (b *Block) QueueMaxSizes() []uint16 { return []uint16{blkQueueSize} }

// ReadConfig reads virtio_blk_config: capacity and seg_max are set, the
// other fields are zero.
func (b *Block) ReadConfig(offset uint64, p []byte) {
	var cfg [blkConfigSize]byte
	binary.LittleEndian.PutUint64(cfg[0:], b.capacity)
	binary.LittleEndian.PutUint32(cfg[12:], blkSegMax)
	readConfigBytes(cfg[:], offset, p)
}

// readConfigBytes copies the configuration space cfg at offset into p and
// zeroes the bytes beyond it.
func readConfigBytes(cfg []byte, offset uint64, p []byte) {
	clear(p)
	if offset < uint64(len(cfg)) {
		copy(p, cfg[offset:])
	}
}

// WriteConfig ignores the write: no field of this configuration is
// writable without VIRTIO_BLK_F_CONFIG_WCE.
func (b *Block) WriteConfig(offset uint64, p []byte) {}

// Activate starts serving the request queue.
func (b *Block) Activate(a *Activation) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.Queues[0] == nil {
		return errors.New("block device: the driver did not enable the request queue")
	}
	b.queue = a.Queues[0]
	b.features = a.Features
	return nil
}

// Reset stops the device after the running request, if any.
func (b *Block) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queue = nil
	b.features = 0
}

// Notify runs every available request to completion.
func (b *Block) Notify(queue int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queue == nil || queue != 0 {
		return
	}
	for {
		chain, err := b.queue.Pop()
		if err != nil || chain == nil {
			break
		}
		written := b.handle(chain)
		if err := b.queue.Push(chain, written); err != nil {
			break
		}
	}
	b.queue.Signal()
}

// handle runs one request and returns the used length: the bytes written
// from the start of the writable stream.
func (b *Block) handle(c *Chain) uint32 {
	readable, writable := c.ReadableLen(), c.WritableLen()
	if readable < blkHeaderSize || writable < 1 {
		b.log.warn("virtio block: request without header or status byte; returning it unprocessed",
			"head", c.Head, "readable_bytes", readable, "writable_bytes", writable)
		return 0
	}
	var hdr [blkHeaderSize]byte
	if err := c.ReadAt(hdr[:], 0); err != nil {
		b.log.warn("virtio block: reading request header failed", "head", c.Head, "error", err)
		return 0
	}
	reqType := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	req := blkRequest{chain: c, sector: sector, dataOut: readable - blkHeaderSize, dataIn: writable - 1}

	status, written := b.run(reqType, &req)
	if err := c.WriteAt([]byte{status}, writable-1); err != nil {
		b.log.warn("virtio block: writing request status failed", "head", c.Head, "error", err)
		return 0
	}
	if status != blkStatusOK {
		if writable == 1 {
			return 1
		}
		return 0
	}
	if written == req.dataIn {
		return uint32(min(writable, 1<<32-1))
	}
	return uint32(written)
}

// blkRequest is one parsed request: the sector from the header and the
// sizes of the data areas (readable after the header, writable before the
// status byte).
type blkRequest struct {
	chain           *Chain
	sector          uint64
	dataOut, dataIn uint64
}

// run executes a request and returns its status and the number of data
// bytes written into the writable area.
func (b *Block) run(reqType uint32, r *blkRequest) (uint8, uint64) {
	switch reqType {
	case blkTypeIn:
		if r.dataOut != 0 {
			return b.reject(r, "read request has device-readable data after the header")
		}
		if err := b.checkRange(r.sector, r.dataIn); err != nil {
			return b.reject(r, err.Error())
		}
		return b.read(r)
	case blkTypeOut:
		if b.cfg.ReadOnly {
			return b.reject(r, "write request on a read-only disk")
		}
		if r.dataIn != 0 {
			return b.reject(r, "write request has device-writable data before the status byte")
		}
		if err := b.checkRange(r.sector, r.dataOut); err != nil {
			return b.reject(r, err.Error())
		}
		return b.write(r)
	case blkTypeFlush:
		if b.features&BlockFeatureFlush == 0 {
			return blkStatusUnsupp, 0
		}
		if err := b.cfg.Backing.Flush(); err != nil {
			b.log.error("virtio block: flush failed", "error", err)
			return blkStatusIOErr, 0
		}
		return blkStatusOK, 0
	case blkTypeGetID:
		if r.dataIn < BlockIDSize {
			return b.reject(r, fmt.Sprintf("GET_ID buffer has %d bytes, needs %d", r.dataIn, BlockIDSize))
		}
		var id [BlockIDSize]byte
		copy(id[:], b.cfg.ID)
		if err := r.chain.WriteAt(id[:], 0); err != nil {
			return b.reject(r, err.Error())
		}
		return blkStatusOK, BlockIDSize
	default:
		return blkStatusUnsupp, 0
	}
}

func (b *Block) reject(r *blkRequest, reason string) (uint8, uint64) {
	b.log.warn("virtio block: rejected request", "head", r.chain.Head, "sector", r.sector, "reason", reason)
	return blkStatusIOErr, 0
}

// checkRange checks that length bytes at sector are whole sectors inside
// the disk.
func (b *Block) checkRange(sector, length uint64) error {
	if length%SectorSize != 0 {
		return fmt.Errorf("data length %d is not a multiple of %d", length, SectorSize)
	}
	if sector > b.capacity || length/SectorSize > b.capacity-sector {
		return fmt.Errorf("sectors [%d, +%d) are beyond the disk capacity of %d sectors", sector, length/SectorSize, b.capacity)
	}
	return nil
}

func (b *Block) read(r *blkRequest) (uint8, uint64) {
	parts, err := r.chain.WritableSlices(0, r.dataIn)
	if err != nil {
		return b.reject(r, err.Error())
	}
	off := int64(r.sector * SectorSize)
	var done uint64
	for _, p := range parts {
		n, err := b.cfg.Backing.ReadAt(p, off)
		done += uint64(n)
		if n < len(p) {
			b.log.error("virtio block: read failed", "sector", r.sector, "offset", off, "error", err)
			return blkStatusIOErr, done
		}
		off += int64(n)
	}
	return blkStatusOK, done
}

func (b *Block) write(r *blkRequest) (uint8, uint64) {
	parts, err := r.chain.ReadableSlices(blkHeaderSize, r.dataOut)
	if err != nil {
		return b.reject(r, err.Error())
	}
	off := int64(r.sector * SectorSize)
	for _, p := range parts {
		n, err := b.cfg.Backing.WriteAt(p, off)
		if err != nil || n < len(p) {
			b.log.error("virtio block: write failed", "sector", r.sector, "offset", off, "error", err)
			return blkStatusIOErr, 0
		}
		off += int64(n)
	}
	return blkStatusOK, 0
}
