package arm64

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ImageHeader is the 64-byte header at the start of an arm64 Linux kernel
// Image (Documentation/arch/arm64/booting.rst).
type ImageHeader struct {
	// TextOffset is the Image's required offset above a 2 MiB aligned base.
	TextOffset uint64
	// ImageSize is the memory the kernel needs from its load address,
	// including BSS; 0 in kernels older than 3.17.
	ImageSize uint64
	// Flags bit 0 is big-endian; bits 1-2 the page size; bit 3 whether the
	// base may be anywhere in memory.
	Flags uint64
}

// errNotImage is wrapped by ParseImageHeader for files that are not arm64
// kernel Images.
var errNotImage = errors.New("not an arm64 Linux kernel Image")

const (
	imageHeaderSize = 64
	imageMagic      = 0x644d5241 // "ARM\x64", little-endian at offset 56
	// legacyTextOffset applies when ImageSize is 0.
	legacyTextOffset = 0x80000
)

// ParseImageHeader checks and decodes the header of an arm64 kernel Image.
// It rejects big-endian kernels and compressed files (vmlinuz.gz, EFI
// zboot), which spore cannot boot directly.
func ParseImageHeader(data []byte) (ImageHeader, error) {
	if len(data) < imageHeaderSize {
		return ImageHeader{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", errNotImage, len(data), imageHeaderSize)
	}
	if m := binary.LittleEndian.Uint32(data[56:]); m != imageMagic {
		hint := ""
		if data[0] == 0x1f && data[1] == 0x8b {
			hint = " (it is gzip-compressed: decompress it first)"
		}
		return ImageHeader{}, fmt.Errorf("%w: magic %#x at offset 56, want %#x%s", errNotImage, m, imageMagic, hint)
	}

	h := ImageHeader{
		TextOffset: binary.LittleEndian.Uint64(data[8:]),
		ImageSize:  binary.LittleEndian.Uint64(data[16:]),
		Flags:      binary.LittleEndian.Uint64(data[24:]),
	}
	if h.ImageSize == 0 {
		h.TextOffset = legacyTextOffset
	}
	if h.Flags&1 != 0 {
		return ImageHeader{}, fmt.Errorf("%w: big-endian kernels are not supported", errNotImage)
	}
	if h.TextOffset%4096 != 0 || h.TextOffset >= 2<<20 {
		return ImageHeader{}, fmt.Errorf("%w: text offset %#x is not a page-aligned value below 2 MiB", errNotImage, h.TextOffset)
	}
	return h, nil
}

// LoadSize returns the bytes the kernel occupies from its load address:
// ImageSize, or the file length for kernels that do not report it.
func (h ImageHeader) LoadSize(fileSize int) uint64 {
	if h.ImageSize > uint64(fileSize) {
		return h.ImageSize
	}
	return uint64(fileSize)
}
