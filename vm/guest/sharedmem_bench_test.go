package guest

import (
	"context"
	"testing"
	"time"

	"github.com/spore-vm/spore/objects"
)

// benchChildren is the number of idle children the PSS benchmark compares
// with one.
const benchChildren = 8

// idleTime is how long children idle before their memory is measured.
const idleTime = 5 * time.Second

// BenchmarkSharedMemoryPSS resumes one child of a captured 256 MiB guest,
// lets it idle and measures the PSS of its guest RAM, then resumes seven
// more and measures the total PSS of the eight. It does so with
// ShareMemory and without, and reports the ratios 8 ÷ 1. PSS divides each
// page by the number of its mappings, so a page the children share counts
// once in the total, and a private page fully.
//
// footprint is the memory guest RAM takes on the host, each page counted
// once: the private pages of every child plus the shared backing's memfd,
// including memfd pages no child maps, which PSS does not see.
func BenchmarkSharedMemoryPSS(b *testing.B) {
	g := bootTestGuest(b, Options{MemoryBytes: 256 << 20})
	store, refsDB := openTestStore(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	id, _, err := g.Capture(CaptureOptions{Store: store, Refs: refsDB, Ref: "refs/heads/base"})
	if err != nil {
		b.Fatal(err)
	}
	g.Kill()

	for range b.N {
		for _, share := range []bool{true, false} {
			mode := "private"
			if share {
				mode = "shared"
			}
			one, eight := measureIdleChildren(b, ctx, store, id, share)
			b.ReportMetric(float64(eight.pss)/float64(one.pss), "pss-8/1-"+mode)
			b.ReportMetric(float64(eight.footprint)/float64(one.footprint), "footprint-8/1-"+mode)
			b.ReportMetric(float64(one.pss)/(1<<20), "pss-1-MiB-"+mode)
			b.ReportMetric(float64(eight.pss)/(1<<20), "pss-8-MiB-"+mode)
			b.Logf("%s: 1 child PSS %d KiB, footprint %d KiB; %d children PSS %d KiB, footprint %d KiB",
				mode, one.pss>>10, one.footprint>>10, benchChildren, eight.pss>>10, eight.footprint>>10)
		}
	}
}

// childrenMemory is the guest RAM memory of a set of children, in bytes.
type childrenMemory struct {
	pss       uint64
	footprint uint64
}

// measureIdleChildren resumes benchChildren children of id one after the
// other and measures the first alone and then all of them, each time after
// they idled for idleTime.
func measureIdleChildren(b *testing.B, ctx context.Context, store *objects.Store, id objects.ID, share bool) (one, all childrenMemory) {
	var children []*Guest
	defer func() {
		for _, child := range children {
			child.Kill()
		}
	}()

	for i := range benchChildren {
		console := &syncBuffer{}
		child, err := Resume(ctx, store, id, "base", Options{ShareMemory: share, KernelLog: console})
		if err != nil {
			b.Fatalf("child %d: resume: %v\nconsole:\n%s", i, err, console.String())
		}
		children = append(children, child)
		if i == 0 {
			time.Sleep(idleTime)
			one = measureChildren(b, children)
		}
	}
	time.Sleep(idleTime)
	return one, measureChildren(b, children)
}

func measureChildren(b *testing.B, children []*Guest) childrenMemory {
	var total childrenMemory
	for i, child := range children {
		usage, err := child.MemoryUsage()
		if err != nil {
			b.Fatalf("child %d: %v", i, err)
		}
		total.pss += usage.PSS
		// A child without a shared backing has only private pages (zero
		// pages are not counted in RSS).
		if _, shared := child.SharedMemoryStats(); shared {
			total.footprint += usage.Anonymous
		} else {
			total.footprint += usage.RSS
		}
	}
	if stats, shared := children[0].SharedMemoryStats(); shared {
		total.footprint += stats.ResidentBytes
	}
	if total.pss == 0 {
		b.Fatalf("%d children have no resident guest RAM", len(children))
	}
	return total
}
