package guest

import (
	"context"
	"encoding/binary"
	"os"
	"testing"
	"time"
)

// Bits of a /proc/kpageflags entry, from the kernel's
// Documentation/admin-guide/mm/pagemap.rst.
const (
	kpfSlab     = 7
	kpfAnon     = 12
	kpfPgtable  = 26
	kpfReserved = 32
)

// BenchmarkChildDivergence resumes one child of a warmed, settled 256 MiB
// guest with ShareMemory and reports the guest pages it holds privately:
// the pages its guest wrote since the resume. It counts them when Resume
// returns and again after idleTime. The second set is sorted by what the
// child's kernel uses each page for, read from its /proc/kpageflags. The
// kinds are user anonymous memory (guest-init's heap and stacks), slab
// objects, page tables, memory the kernel reserved at boot (its image,
// struct pages and per-CPU areas) and the rest (kernel stacks, vmalloc and
// other kernel allocations). These pages are what every idle child adds to
// the memory that BenchmarkSharedMemoryPSS measures.
func BenchmarkChildDivergence(b *testing.B) {
	g := bootTestGuest(b, Options{MemoryBytes: 256 << 20})
	store, refsDB := openTestStore(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	run(b, ctx, g, "echo warm > /tmp/warm; sleep 1000000 </dev/null >/dev/null 2>&1 &")
	time.Sleep(settleTime)
	id, _, err := g.Capture(CaptureOptions{Store: store, Refs: refsDB, Ref: "refs/heads/base"})
	if err != nil {
		b.Fatal(err)
	}
	g.Kill()

	page := uint64(os.Getpagesize())
	for range b.N {
		console := &syncBuffer{}
		child, err := Resume(ctx, store, id, "base", Options{ShareMemory: true, KernelLog: console})
		if err != nil {
			b.Fatalf("resume: %v\nconsole:\n%s", err, console.String())
		}
		atResume, err := child.PrivatePages()
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(idleTime)
		idle, err := child.PrivatePages()
		if err != nil {
			b.Fatal(err)
		}

		// Reading kpageflags runs a command, which writes more pages. The
		// pages counted above were listed before it ran.
		flags := []byte(run(b, ctx, child, "cat /proc/kpageflags"))
		kinds := map[string]uint64{}
		for _, addr := range idle {
			pfn := addr / page
			if (pfn+1)*8 > uint64(len(flags)) {
				b.Fatalf("/proc/kpageflags has %d bytes, no entry for page frame %#x", len(flags), pfn)
			}
			kinds[pageKind(binary.LittleEndian.Uint64(flags[pfn*8:]))]++
		}
		child.Kill()

		b.ReportMetric(float64(uint64(len(atResume))*page)/(1<<10), "private-KiB-at-resume")
		b.ReportMetric(float64(uint64(len(idle))*page)/(1<<10), "private-KiB-after-idle")
		for _, kind := range []string{"user", "slab", "pagetable", "reserved", "other"} {
			b.ReportMetric(float64(kinds[kind]*page)/(1<<10), kind+"-KiB")
		}
	}
}

// pageKind names what the guest kernel uses a page for, from its
// kpageflags entry.
func pageKind(flags uint64) string {
	switch {
	case flags&(1<<kpfAnon) != 0:
		return "user"
	case flags&(1<<kpfSlab) != 0:
		return "slab"
	case flags&(1<<kpfPgtable) != 0:
		return "pagetable"
	case flags&(1<<kpfReserved) != 0:
		return "reserved"
	}
	return "other"
}
