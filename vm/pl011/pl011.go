// Package pl011 emulates the transmit side of an ARM PrimeCell PL011 UART,
// enough for Linux's amba-pl011 driver to use it as its boot console.
//
// The transmit FIFO never fills: every byte written to the data register
// goes straight to the output. Nothing is ever received.
package pl011

import (
	"io"
	"sync"
)

// Register offsets (ARM PrimeCell UART (PL011) Technical Reference Manual).
const (
	regDR    = 0x000
	regFR    = 0x018
	regIBRD  = 0x024
	regFBRD  = 0x028
	regLCRH  = 0x02c
	regCR    = 0x030
	regIFLS  = 0x034
	regIMSC  = 0x038
	regRIS   = 0x03c
	regMIS   = 0x040
	regICR   = 0x044
	regDMACR = 0x048
	regID    = 0xfe0 // PeriphID0-3 at 0xfe0-0xfec, PCellID0-3 at 0xff0-0xffc
)

const (
	// flagRXFE and flagTXFE are the receive-empty and transmit-empty bits
	// of FR; both are always set.
	flagRXFE = 1 << 4
	flagTXFE = 1 << 7
	// intTX is the transmit interrupt bit of IMSC, RIS and MIS. It is raised
	// whenever it is unmasked, because the FIFO is always below its level.
	intTX = 1 << 5
)

// ids are the PrimeCell identification registers the AMBA bus reads to
// match the driver: part 0x011, designer ARM (0x41), revision r1p5.
var ids = [8]uint32{0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1}

// InterruptLine drives the UART's level-triggered interrupt.
type InterruptLine interface {
	SetLevel(asserted bool)
}

// UART is one PL011. It is safe for concurrent use by several vCPUs.
type UART struct {
	mu  sync.Mutex
	out io.Writer
	irq InterruptLine
	// Registers the driver programs and reads back.
	imsc, cr, lcrh, ibrd, fbrd, ifls uint32
	// asserted is the interrupt line's current level.
	asserted bool
}

// New returns a UART that writes transmitted bytes to out. irq may be nil
// when no interrupt controller is wired, in which case the driver must poll.
func New(out io.Writer, irq InterruptLine) *UART {
	return &UART{out: out, irq: irq, cr: 0x300}
}

// HandleMMIO serves one access at offset within the UART's 4 KiB window.
// Reads of unknown registers return zero, writes to them are ignored.
func (u *UART) HandleMMIO(offset uint64, data []byte, isWrite bool) {
	u.mu.Lock()
	defer u.mu.Unlock()

	if isWrite {
		u.write(offset, data)
		u.updateInterrupt()
		return
	}
	putLE(data, u.read(offset))
}

func (u *UART) write(offset uint64, data []byte) {
	value := getLE(data)
	switch offset {
	case regDR:
		// Output errors cannot be reported to the guest; the byte is lost.
		u.out.Write([]byte{byte(value)})
	case regIMSC:
		u.imsc = value & 0x7ff
	case regCR:
		u.cr = value
	case regLCRH:
		u.lcrh = value
	case regIBRD:
		u.ibrd = value
	case regFBRD:
		u.fbrd = value
	case regIFLS:
		u.ifls = value
	}
}

func (u *UART) read(offset uint64) uint32 {
	switch {
	case offset == regFR:
		return flagRXFE | flagTXFE
	case offset == regIMSC:
		return u.imsc
	case offset == regRIS:
		return intTX
	case offset == regMIS:
		return intTX & u.imsc
	case offset == regCR:
		return u.cr
	case offset == regLCRH:
		return u.lcrh
	case offset == regIBRD:
		return u.ibrd
	case offset == regFBRD:
		return u.fbrd
	case offset == regIFLS:
		return u.ifls
	case offset >= regID && offset < regID+0x20 && offset%4 == 0:
		return ids[(offset-regID)/4]
	}
	return 0
}

// updateInterrupt sets the line to whether an unmasked interrupt is raised.
func (u *UART) updateInterrupt() {
	level := intTX&u.imsc != 0
	if u.irq != nil && level != u.asserted {
		u.irq.SetLevel(level)
	}
	u.asserted = level
}

func getLE(data []byte) uint32 {
	var v uint32
	for i := len(data) - 1; i >= 0; i-- {
		v = v<<8 | uint32(data[i])
	}
	return v
}

func putLE(data []byte, v uint32) {
	for i := range data {
		data[i] = byte(v)
		v >>= 8
	}
}
