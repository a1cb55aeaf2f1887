package objects

import (
	"fmt"
	"math/bits"
)

// Chunk index geometry limits. An index node lists up to Fanout children;
// at level 0 the children are chunks, above it they are index nodes.
const (
	// DefaultChunkSize is the chunk size of new indexes: 64 KiB, chosen by
	// BenchmarkChunkSize (see docs/spore-format.md).
	DefaultChunkSize = 64 << 10
	// DefaultFanout is the number of children per index node: a leaf of
	// 512 chunks covers 32 MiB and encodes to about 16 KiB.
	DefaultFanout = 512

	minChunkSize = 4 << 10
	maxChunkSize = 16 << 20
	maxFanout    = 4096
	maxLevel     = 8
)

// IndexNode is one node of a chunk index. Present[i] false is a hole: the
// bytes it covers are zero and nothing is stored for them.
type IndexNode struct {
	// Level is 0 for a leaf, whose children are chunks; a node at level L
	// has children at level L-1.
	Level int
	// ChunkSize is the size of every chunk in bytes; the last chunk of an
	// index may be shorter.
	ChunkSize int
	// Fanout is the maximum number of children of a node.
	Fanout int
	// Size is the number of bytes this node covers.
	Size uint64
	// Children holds one ID per child slot; ZeroID marks a hole.
	Children []ID
}

// childSpan returns the number of bytes one child of a node at level covers.
func childSpan(level, chunkSize, fanout int) (uint64, bool) {
	span := uint64(chunkSize)
	for i := 0; i < level; i++ {
		hi, lo := bits.Mul64(span, uint64(fanout))
		if hi != 0 {
			return 0, false
		}
		span = lo
	}
	return span, true
}

// ChildSpan returns the number of bytes one child slot of n covers.
func (n *IndexNode) ChildSpan() uint64 {
	span, _ := childSpan(n.Level, n.ChunkSize, n.Fanout)
	return span
}

// validate checks the node's geometry.
func (n *IndexNode) validate() error {
	if n.ChunkSize < minChunkSize || n.ChunkSize > maxChunkSize || n.ChunkSize&(n.ChunkSize-1) != 0 {
		return fmt.Errorf("chunk size %d is not a power of two from %d to %d", n.ChunkSize, minChunkSize, maxChunkSize)
	}
	if n.Fanout < 2 || n.Fanout > maxFanout {
		return fmt.Errorf("fan-out %d is outside 2..%d", n.Fanout, maxFanout)
	}
	if n.Level < 0 || n.Level > maxLevel {
		return fmt.Errorf("level %d is outside 0..%d", n.Level, maxLevel)
	}
	span, ok := childSpan(n.Level, n.ChunkSize, n.Fanout)
	if !ok {
		return fmt.Errorf("level %d with fan-out %d overflows 64 bits", n.Level, n.Fanout)
	}
	want := (n.Size + span - 1) / span
	if n.Size > 0 && want == 0 || uint64(len(n.Children)) != want {
		return fmt.Errorf("node of %d bytes at level %d needs %d child slots, has %d", n.Size, n.Level, want, len(n.Children))
	}
	if len(n.Children) > n.Fanout {
		return fmt.Errorf("node has %d child slots, more than the fan-out %d", len(n.Children), n.Fanout)
	}
	return nil
}

// Encode returns the node's canonical payload: form, version, level, chunk
// size, fan-out, size, slot count, a presence bitmap and the present IDs.
func (n *IndexNode) Encode() []byte {
	e := encoder{}
	e.byte1(treeFormIndex)
	e.byte1(treeVersion)
	e.byte1(byte(n.Level))
	e.uvarint(uint64(n.ChunkSize))
	e.uvarint(uint64(n.Fanout))
	e.uvarint(n.Size)
	e.uvarint(uint64(len(n.Children)))
	bitmap := make([]byte, (len(n.Children)+7)/8)
	for i, c := range n.Children {
		if !c.IsZero() {
			bitmap[i/8] |= 1 << (i % 8)
		}
	}
	e.buf = append(e.buf, bitmap...)
	for _, c := range n.Children {
		if !c.IsZero() {
			e.id(c)
		}
	}
	return e.buf
}

// DecodeIndexNode parses a chunk index node payload and checks that it is
// canonical and its geometry consistent.
func DecodeIndexNode(payload []byte) (*IndexNode, error) {
	d := decoder{buf: payload}
	if form := d.byte1(); d.err == nil && form != treeFormIndex {
		return nil, fmt.Errorf("%w: tree form %q is not an index node", ErrCorrupt, form)
	}
	if v := d.byte1(); d.err == nil && v != treeVersion {
		return nil, fmt.Errorf("%w: index node version %d is not supported (want %d)", ErrCorrupt, v, treeVersion)
	}
	n := &IndexNode{Level: int(d.byte1())}
	chunkSize, fanout := d.uvarint(), d.uvarint()
	if d.err == nil && (chunkSize > maxChunkSize || fanout > maxFanout) {
		d.fail("chunk size %d or fan-out %d out of range", chunkSize, fanout)
	}
	n.ChunkSize, n.Fanout = int(chunkSize), int(fanout)
	n.Size = d.uvarint()
	slots := d.uvarint()
	if d.err == nil && slots > maxFanout {
		d.fail("%d child slots exceed %d", slots, maxFanout)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.buf) < int(slots+7)/8 {
		return nil, fmt.Errorf("%w: truncated presence bitmap", ErrCorrupt)
	}
	bitmap := d.buf[:(slots+7)/8]
	d.buf = d.buf[(slots+7)/8:]
	n.Children = make([]ID, slots)
	for i := range n.Children {
		if bitmap[i/8]&(1<<(i%8)) != 0 {
			n.Children[i] = d.id()
		}
	}
	if slots%8 != 0 && bitmap[len(bitmap)-1]>>(slots%8) != 0 {
		d.fail("padding bits of the presence bitmap are set")
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	for i, c := range n.Children {
		if c.IsZero() && bitmap[i/8]&(1<<(i%8)) != 0 {
			return nil, fmt.Errorf("%w: present child %d has the zero ID", ErrCorrupt, i)
		}
	}
	if err := n.validate(); err != nil {
		return nil, fmt.Errorf("%w: index node: %v", ErrCorrupt, err)
	}
	return n, nil
}
