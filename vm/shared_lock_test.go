package vm

import (
	"testing"
	"time"
)

// gatedPager is a slicePager whose reads signal entered and then wait
// until gate is closed, to hold a chunk fill open.
type gatedPager struct {
	*slicePager
	entered chan struct{}
	gate    chan struct{}
}

func (p *gatedPager) ReadChunk(off uint64) ([]byte, bool, error) {
	p.entered <- struct{}{}
	<-p.gate
	return p.slicePager.ReadChunk(off)
}

func TestChunkLockMakesSecondBackingWait(t *testing.T) {
	dir := sharedTestDir(t)
	slow := &gatedPager{slicePager: newTestPager(), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	first, err := OpenSharedMemory(dir, "index", uint64(len(slow.image)), slow, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	pager := newTestPager()
	second := openTestBacking(t, dir, "index", pager)
	defer second.Close()

	// The first backing holds chunk 0's lock while its pager read waits.
	firstDone := make(chan error, 1)
	go func() {
		_, err := first.populate(0)
		firstDone <- err
	}()
	<-slow.entered

	secondDone := make(chan error, 1)
	go func() {
		_, err := second.populate(0)
		secondDone <- err
	}()
	select {
	case err := <-secondDone:
		t.Fatalf("second backing filled chunk 0 while the first held its lock (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}

	close(slow.gate)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; err != nil {
		t.Fatal(err)
	}
	if n := pager.reads[0]; n != 0 {
		t.Errorf("second backing read chunk 0 from its pager %d times, expected 0", n)
	}
	if got := second.Stats().ChunksFound; got != 1 {
		t.Errorf("second backing found %d chunks in the file, expected 1", got)
	}
}

func TestChunkLockOtherChunksDoNotWait(t *testing.T) {
	dir := sharedTestDir(t)
	slow := &gatedPager{slicePager: newTestPager(), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	first, err := OpenSharedMemory(dir, "index", uint64(len(slow.image)), slow, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second := openTestBacking(t, dir, "index", newTestPager())
	defer second.Close()

	firstDone := make(chan error, 1)
	go func() {
		_, err := first.populate(0)
		firstDone <- err
	}()
	<-slow.entered
	defer func() {
		close(slow.gate)
		<-firstDone
	}()

	// Chunk 2 is another byte range, so its fill does not wait.
	done := make(chan error, 1)
	go func() {
		_, err := second.populate(2)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("chunk 2 waited for the lock of chunk 0")
	}
}
