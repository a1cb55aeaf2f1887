package virtio

import (
	"testing"
)

// BenchmarkBlockRead4K measures 4 KiB block reads through the whole path:
// register write, chain walk, backing read into guest memory, used ring
// update and interrupt. The backing is in memory, so the number is the
// device-side overhead, not disk speed.
func BenchmarkBlockRead4K(b *testing.B) {
	dev, err := NewBlock(BlockConfig{Backing: &memBacking{data: make([]byte, 1<<20)}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	g := &blkGuest{testGuest: newTestGuest(b, dev)}
	g.probe(DeviceIDBlock, ^uint64(0), 0)
	g.q = g.queues[0]
	hdr := g.header(blkTypeIn, 8)
	data := g.alloc(4096, PageSize)
	status := g.alloc(1, 1)

	b.SetBytes(4096)
	b.ResetTimer()
	for range b.N {
		g.q.submit(gbuf{addr: hdr, len: blkHeaderSize}, gbuf{addr: data, len: 4096, write: true}, gbuf{addr: status, len: 1, write: true})
		g.q.kick()
		g.q.takeUsed()
		g.ackInterrupt()
	}
}

// BenchmarkConsoleToGuest measures host-to-guest throughput on the agent
// port with 512-byte guest receive buffers.
func BenchmarkConsoleToGuest(b *testing.B) {
	dev, err := NewConsole(DefaultConsolePorts(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	g := &consoleGuest{testGuest: newTestGuest(b, dev), dev: dev, bufs: map[[2]int]gbuf{}}
	g.probe(DeviceIDConsole, ^uint64(0), 0)
	g.bringUp()
	chunk := make([]byte, testRxBufs*testBufSize)

	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := dev.Port(1).Write(chunk); err != nil {
			b.Fatal(err)
		}
		if got := len(g.receive(g.queues[4])); got != len(chunk) {
			b.Fatalf("guest received %d bytes, want %d", got, len(chunk))
		}
	}
}
