package guest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/objects"
)

// benchChildren is the number of idle children the PSS benchmark compares
// with one.
const benchChildren = 8

// idleTime is how long children idle before their memory is measured.
const idleTime = 5 * time.Second

// settleTime is how long the warmed guest runs before it is captured.
const settleTime = 10 * time.Second

// BenchmarkSharedMemoryPSS captures a warmed 256 MiB guest and compares
// the memory of eight idle children of it with that of one. The guest is
// warmed the way a user warms a runtime before capturing it: a background
// process keeps running and a file is written. In the "busybox" case the
// guest has only the busybox initramfs userland and the children only
// idle, the smallest working set a guest has. In "data-32MiB" the guest
// also loads 32 MiB of random data into its page cache, standing in for
// the heap and caches of a warmed runtime. Each child reads all of it
// once after its resume and then idles, as a child that used its warm
// state read-only does.
//
// Each case resumes one child alone, lets it idle, measures the PSS of its
// guest RAM and kills it. Then it resumes eight children at once, as a
// fan-out does, lets them idle as long and measures their total PSS. It
// does so with ShareMemory and without, and reports the ratios 8 ÷ 1. PSS
// divides each page by the number of its mappings, so a page the children
// share counts once in the total, and a private page fully.
//
// footprint is the memory guest RAM takes on the host, each page counted
// once: the private pages of every child plus the shared backing's memfd,
// including memfd pages no child maps, which PSS does not see.
// pss-8/rss-mean divides the total PSS of the eight by their mean RSS,
// which is the PSS one of them would have alone, measured at one moment.
// private-KiB-per-child is the mean of the pages each of the eight wrote
// since its resume. pss-booted-MiB is the PSS of the guest RAM of the
// booted, warmed guest just before the capture.
func BenchmarkSharedMemoryPSS(b *testing.B) {
	cases := []struct {
		name string
		// warm runs in the guest before the capture, use in every child
		// after its resume.
		warm, use string
	}{
		{"busybox", "", ""},
		// md5sum reads every byte. busybox cat to /dev/null would not: it
		// uses sendfile, which the null device completes without reading.
		{"data-32MiB", "head -c 33554432 /dev/urandom > /tmp/data; ", "md5sum /tmp/data"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			benchmarkSharedMemoryPSS(b, c.warm, c.use)
		})
	}
}

func benchmarkSharedMemoryPSS(b *testing.B, warm, use string) {
	g := bootTestGuest(b, Options{MemoryBytes: 256 << 20})
	store, refsDB := openTestStore(b)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()

	run(b, ctx, g, warm+"echo warm > /tmp/warm; sleep 1000000 </dev/null >/dev/null 2>&1 &")
	// Let the guest settle, as a warmed guest has, before it is captured.
	time.Sleep(settleTime)
	// The booted guest's RAM, all of it the guest's own, is what one
	// guest costs without a snapshot to share.
	parent, err := g.MemoryUsage()
	if err != nil {
		b.Fatal(err)
	}
	id, _, err := g.Capture(CaptureOptions{Store: store, Refs: refsDB, Ref: "refs/heads/base"})
	if err != nil {
		b.Fatal(err)
	}
	g.Kill()
	b.ReportMetric(float64(parent.PSS)/(1<<20), "pss-booted-MiB")

	for range b.N {
		for _, share := range []bool{true, false} {
			mode := "private"
			if share {
				mode = "shared"
			}
			one := measureIdleChildren(b, ctx, store, id, 1, share, use)
			eight := measureIdleChildren(b, ctx, store, id, benchChildren, share, use)
			b.ReportMetric(float64(eight.pss)/float64(one.pss), "pss-8/1-"+mode)
			b.ReportMetric(float64(eight.pss)/float64(eight.rss/benchChildren), "pss-8/rss-mean-"+mode)
			b.ReportMetric(float64(eight.footprint)/float64(one.footprint), "footprint-8/1-"+mode)
			b.ReportMetric(float64(one.pss)/(1<<20), "pss-1-MiB-"+mode)
			b.ReportMetric(float64(eight.pss)/(1<<20), "pss-8-MiB-"+mode)
			if share {
				b.ReportMetric(float64(eight.private/benchChildren)/(1<<10), "private-KiB-per-child")
				b.ReportMetric(float64(eight.privateAtResume/benchChildren)/(1<<10), "private-KiB-per-child-at-resume")
			}
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
	// private is the memory of the pages the children wrote since their
	// resume, privateAtResume the part they had written when Resume
	// returned.
	private, privateAtResume uint64
}

// measureIdleChildren resumes n children of id at once, runs use in each
// unless it is empty, lets them idle for idleTime after the last one is
// ready, measures them and kills them.
func measureIdleChildren(b *testing.B, ctx context.Context, store *objects.Store, id objects.ID, n int, share bool, use string) childrenMemory {
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

	// The pages written by the time Resume returned show how much of the
	// divergence the resume itself causes (the agent handshake and the
	// identity), and how much the idle time adds.
	var atResume uint64
	for i, child := range children {
		pages, err := child.PrivatePages()
		if err != nil {
			b.Fatalf("child %d: %v", i, err)
		}
		atResume += uint64(len(pages))
	}

	if use != "" {
		for i, child := range children {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var stderr bytes.Buffer
				status, err := child.Exec(ctx, agent.Request{Argv: []string{"/bin/sh", "-c", use}}, nil, io.Discard, &stderr)
				if err == nil && status.Code != 0 {
					err = fmt.Errorf("exit status %d, stderr %q", status.Code, stderr.String())
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				b.Fatalf("child %d: %q: %v", i, use, err)
			}
		}
	}

	time.Sleep(idleTime)
	usage := measureChildren(b, children)
	usage.privateAtResume = atResume * uint64(os.Getpagesize())
	return usage
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
			total.private += usage.Anonymous
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
