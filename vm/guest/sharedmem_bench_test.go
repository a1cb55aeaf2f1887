package guest

import (
	"context"
	"sync"
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
// lets it idle and measures the PSS of its guest RAM. Then it resumes eight
// children at once, as a fan-out does, lets them idle as long and measures
// their total PSS. It does so with ShareMemory and without, and reports
// the ratios 8 ÷ 1. PSS divides each page by the number of its mappings,
// so a page the children share counts once in the total, and a private
// page fully.
//
// footprint is the memory guest RAM takes on the host, each page counted
// once: the private pages of every child plus the shared backing's memfd,
// including memfd pages no child maps, which PSS does not see.
// pss-8/rss-mean divides the total PSS of the eight by their mean RSS,
// which is the PSS one of them would have alone, measured at one moment.
func BenchmarkSharedMemoryPSS(b *testing.B) {
	g := bootTestGuest(b, Options{MemoryBytes: 256 << 20})
	store, refsDB := openTestStore(b)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
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
			one := measureIdleChildren(b, ctx, store, id, 1, share)
			eight := measureIdleChildren(b, ctx, store, id, benchChildren, share)
			b.ReportMetric(float64(eight.pss)/float64(one.pss), "pss-8/1-"+mode)
			b.ReportMetric(float64(eight.pss)/float64(eight.rss/benchChildren), "pss-8/rss-mean-"+mode)
			b.ReportMetric(float64(eight.footprint)/float64(one.footprint), "footprint-8/1-"+mode)
			b.ReportMetric(float64(one.pss)/(1<<20), "pss-1-MiB-"+mode)
			b.ReportMetric(float64(eight.pss)/(1<<20), "pss-8-MiB-"+mode)
			b.Logf("%s: 1 child PSS %d KiB, footprint %d KiB; %d children PSS %d KiB, RSS %d KiB, footprint %d KiB",
				mode, one.pss>>10, one.footprint>>10, benchChildren, eight.pss>>10, eight.rss>>10, eight.footprint>>10)
		}
	}
}

// childrenMemory is the guest RAM memory of a set of children, in bytes.
type childrenMemory struct {
	pss       uint64
	rss       uint64
	footprint uint64
}

// measureIdleChildren resumes n children of id at once, lets them idle for
// idleTime after the last one is ready, measures them and kills them.
func measureIdleChildren(b *testing.B, ctx context.Context, store *objects.Store, id objects.ID, n int, share bool) childrenMemory {
	children := make([]*Guest, n)
	errs := make([]error, n)
	consoles := make([]*syncBuffer, n)
	var wg sync.WaitGroup
	for i := range n {
		consoles[i] = &syncBuffer{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Resumes at once share two emulated CPUs in the testbed.
			opts := Options{ShareMemory: share, KernelLog: consoles[i], AgentTimeout: 30 * time.Minute}
			children[i], errs[i] = Resume(ctx, store, id, "base", opts)
		}()
	}
	wg.Wait()
	defer func() {
		for _, child := range children {
			if child != nil {
				child.Kill()
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("child %d: resume: %v\nconsole:\n%s", i, err, consoles[i].String())
		}
	}

	time.Sleep(idleTime)
	return measureChildren(b, children)
}

func measureChildren(b *testing.B, children []*Guest) childrenMemory {
	var total childrenMemory
	for i, child := range children {
		usage, err := child.MemoryUsage()
		if err != nil {
			b.Fatalf("child %d: %v", i, err)
		}
		b.Logf("child %d of %d: RSS %d KiB, PSS %d KiB, private %d KiB", i, len(children), usage.RSS>>10, usage.PSS>>10, usage.Anonymous>>10)
		total.pss += usage.PSS
		total.rss += usage.RSS
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
