package vm

import (
	"sync"
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

// lockTest is two backings of one file, each with its own descriptor as
// two processes have, and the pager of the second.
type lockTest struct {
	slow          *gatedPager
	first, second *SharedMemory
	pager         *slicePager
	gateOnce      sync.Once
}

// openGate lets the first backing's pager read finish.
func (lt *lockTest) openGate() { lt.gateOnce.Do(func() { close(lt.slow.gate) }) }

// newLockTest opens two backings of one file. The first reads through a
// gatedPager, so a fill of it holds its chunk lock until the gate opens.
func newLockTest(t *testing.T) *lockTest {
	t.Helper()
	dir := sharedTestDir(t)
	lt := &lockTest{slow: &gatedPager{slicePager: newTestPager(), entered: make(chan struct{}, 1), gate: make(chan struct{})}}
	var err error
	lt.first, err = OpenSharedMemory(dir, "index", uint64(len(lt.slow.image)), lt.slow, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lt.first.Close() })
	lt.pager = newTestPager()
	lt.second = openTestBacking(t, dir, "index", lt.pager)
	t.Cleanup(func() { lt.second.Close() })
	// Cleanups run last first: a test that failed with the gate shut
	// opens it before the backings close.
	t.Cleanup(lt.openGate)
	return lt
}

// fill populates chunk c of shared in a goroutine and returns the channel
// that receives its error.
func fill(shared *SharedMemory, c uint64) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := shared.populate(c)
		done <- err
	}()
	return done
}

func TestChunkLockMakesSecondBackingWait(t *testing.T) {
	lt := newLockTest(t)
	firstDone := fill(lt.first, 0)
	<-lt.slow.entered

	// The first backing holds chunk 0's lock while its pager read waits.
	secondDone := fill(lt.second, 0)
	select {
	case err := <-secondDone:
		t.Fatalf("second backing filled chunk 0 while the first held its lock (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}

	lt.openGate()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; err != nil {
		t.Fatal(err)
	}
	if n := lt.pager.reads[0]; n != 0 {
		t.Errorf("second backing read chunk 0 from its pager %d times, expected 0", n)
	}
	if got := lt.second.Stats().ChunksFound; got != 1 {
		t.Errorf("second backing found %d chunks in the file, expected 1", got)
	}
}

func TestChunkLockOtherChunksDoNotWait(t *testing.T) {
	lt := newLockTest(t)
	firstDone := fill(lt.first, 0)
	<-lt.slow.entered
	defer func() {
		lt.openGate()
		<-firstDone
	}()

	// Chunk 2 is another byte range, so its fill does not wait.
	select {
	case err := <-fill(lt.second, 2):
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("chunk 2 waited for the lock of chunk 0")
	}
}
