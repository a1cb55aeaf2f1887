// Package fdt builds flattened device tree blobs (DTB, format version 17),
// the hardware description an arm64 Linux kernel reads at boot.
//
// A Builder is filled in document order: BeginNode, properties, nested
// nodes, EndNode. Finish checks that every node was closed and returns the
// blob.
package fdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Header constants of the devicetree specification, version 0.4.
const (
	magic           = 0xd00dfeed
	version         = 17
	lastCompVersion = 16
	headerSize      = 40

	tokenBeginNode = 0x1
	tokenEndNode   = 0x2
	tokenProp      = 0x3
	tokenEnd       = 0x9
)

// Builder accumulates a device tree. The zero value is ready to use.
type Builder struct {
	structure []byte
	strings   []byte
	// stringOffsets maps a property name to its offset in strings, so each
	// name is stored once.
	stringOffsets map[string]uint32
	depth         int
	// reserved lists memory reservation entries as (address, size) pairs.
	reserved [][2]uint64
	err      error
}

// BeginNode opens a child node of the current node. The root node has the
// empty name.
func (b *Builder) BeginNode(name string) {
	if b.depth == 0 && name != "" && len(b.structure) == 0 {
		b.fail(fmt.Errorf("first node %q must be the root node, named \"\"", name))
	}
	b.appendU32(tokenBeginNode)
	b.appendPadded([]byte(name + "\x00"))
	b.depth++
}

// EndNode closes the current node.
func (b *Builder) EndNode() {
	if b.depth == 0 {
		b.fail(errors.New("EndNode without an open node"))
		return
	}
	b.appendU32(tokenEndNode)
	b.depth--
}

// Property adds a property with raw bytes to the current node.
func (b *Builder) Property(name string, value []byte) {
	if b.depth == 0 {
		b.fail(fmt.Errorf("property %q outside any node", name))
		return
	}
	b.appendU32(tokenProp)
	b.appendU32(uint32(len(value)))
	b.appendU32(b.stringOffset(name))
	b.appendPadded(value)
}

// PropertyEmpty adds a boolean property, which is true by being present.
func (b *Builder) PropertyEmpty(name string) { b.Property(name, nil) }

// PropertyString adds a NUL-terminated string property.
func (b *Builder) PropertyString(name, value string) {
	b.Property(name, []byte(value+"\x00"))
}

// PropertyStrings adds a string-list property such as compatible.
func (b *Builder) PropertyStrings(name string, values ...string) {
	var buf []byte
	for _, v := range values {
		buf = append(buf, v...)
		buf = append(buf, 0)
	}
	b.Property(name, buf)
}

// PropertyU32 adds a property of big-endian 32-bit cells.
func (b *Builder) PropertyU32(name string, values ...uint32) {
	buf := make([]byte, 4*len(values))
	for i, v := range values {
		binary.BigEndian.PutUint32(buf[4*i:], v)
	}
	b.Property(name, buf)
}

// PropertyU64 adds a property of big-endian 64-bit values, each two cells.
func (b *Builder) PropertyU64(name string, values ...uint64) {
	buf := make([]byte, 8*len(values))
	for i, v := range values {
		binary.BigEndian.PutUint64(buf[8*i:], v)
	}
	b.Property(name, buf)
}

// Reserve adds a memory reservation entry, which the kernel will not use.
func (b *Builder) Reserve(address, size uint64) {
	b.reserved = append(b.reserved, [2]uint64{address, size})
}

// Finish returns the device tree blob, or the first error made while
// building it.
func (b *Builder) Finish() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.depth != 0 {
		return nil, fmt.Errorf("device tree has %d unclosed nodes", b.depth)
	}
	if len(b.structure) == 0 {
		return nil, errors.New("device tree is empty")
	}

	structure := append(append([]byte(nil), b.structure...), 0, 0, 0, tokenEnd)

	// Layout: header, reservation map (8-byte aligned, ends with a zero
	// entry), structure block, strings block.
	reserved := append([][2]uint64(nil), b.reserved...)
	sort.Slice(reserved, func(i, j int) bool { return reserved[i][0] < reserved[j][0] })
	offReserve := uint32(headerSize)
	offStruct := offReserve + uint32(16*(len(reserved)+1))
	offStrings := offStruct + uint32(len(structure))
	total := offStrings + uint32(len(b.strings))

	blob := make([]byte, total)
	header := []uint32{
		magic, total, offStruct, offStrings, offReserve,
		version, lastCompVersion,
		0, // boot_cpuid_phys
		uint32(len(b.strings)), uint32(len(structure)),
	}
	for i, v := range header {
		binary.BigEndian.PutUint32(blob[4*i:], v)
	}
	for i, r := range reserved {
		binary.BigEndian.PutUint64(blob[int(offReserve)+16*i:], r[0])
		binary.BigEndian.PutUint64(blob[int(offReserve)+16*i+8:], r[1])
	}
	copy(blob[offStruct:], structure)
	copy(blob[offStrings:], b.strings)
	return blob, nil
}

func (b *Builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *Builder) stringOffset(name string) uint32 {
	if b.stringOffsets == nil {
		b.stringOffsets = map[string]uint32{}
	}
	if off, ok := b.stringOffsets[name]; ok {
		return off
	}
	off := uint32(len(b.strings))
	b.strings = append(b.strings, name...)
	b.strings = append(b.strings, 0)
	b.stringOffsets[name] = off
	return off
}

func (b *Builder) appendU32(v uint32) {
	b.structure = binary.BigEndian.AppendUint32(b.structure, v)
}

// appendPadded appends data and zero bytes up to the next 4-byte boundary.
func (b *Builder) appendPadded(data []byte) {
	b.structure = append(b.structure, data...)
	for len(b.structure)%4 != 0 {
		b.structure = append(b.structure, 0)
	}
}
