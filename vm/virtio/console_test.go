package virtio

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"
)

const (
	consoleBadID  = 0xffffffff // VIRTIO_CONSOLE_BAD_ID, used by Linux for DEVICE_READY
	testBufSize   = 512
	testCtrlBufs  = 16
	testRxBufs    = 8
	testTimeout   = 10 * time.Second
	agentPortName = "org.spore.agent"
)

type ctrlMsg struct {
	id      uint32
	event   uint16
	value   uint16
	payload string
}

// consoleGuest plays Linux's virtio_console driver on top of testGuest.
type consoleGuest struct {
	*testGuest
	dev  *Console
	bufs map[[2]int]gbuf // (queue, head) -> posted receive buffer
}

func newConsoleGuest(t *testing.T, want uint64) *consoleGuest {
	t.Helper()
	dev, err := NewConsole(DefaultConsolePorts(), nil)
	if err != nil {
		t.Fatalf("NewConsole: %v", err)
	}
	g := &consoleGuest{testGuest: newTestGuest(t, dev), dev: dev, bufs: map[[2]int]gbuf{}}
	g.probe(DeviceIDConsole, want, 0)
	t.Cleanup(func() { dev.Close() })
	return g
}

// postRx gives the device n empty receive buffers on queue q.
func (g *consoleGuest) postRx(q *guestQueue, n int) {
	for range n {
		b := gbuf{addr: g.alloc(testBufSize, 8), len: testBufSize, write: true}
		head := q.submit(b)
		g.bufs[[2]int{q.index, int(head)}] = b
	}
	q.kick()
}

// receive collects the data of used receive buffers on q and posts each
// buffer again, as the Linux driver does.
func (g *consoleGuest) receive(q *guestQueue) []byte {
	var out []byte
	used := q.takeUsed()
	for _, u := range used {
		key := [2]int{q.index, int(u.id)}
		b, ok := g.bufs[key]
		if !ok {
			g.t.Fatalf("queue %d returned head %d, which is not a receive buffer", q.index, u.id)
		}
		delete(g.bufs, key)
		out = append(out, g.readMem(b.addr, int(u.len))...)
		head := q.submit(b)
		g.bufs[[2]int{q.index, int(head)}] = b
	}
	if len(used) > 0 {
		q.kick()
	}
	return out
}

func (g *consoleGuest) transmit(q *guestQueue, data []byte) uint16 {
	addr := g.alloc(uint64(len(data)), 8)
	g.writeMem(addr, data)
	head := q.submit(gbuf{addr: addr, len: uint32(len(data))})
	q.kick()
	return head
}

// expectTransmitted checks that the host reads want from port and that
// the agent port's transmit queue returned the buffer at head. when names
// the moment in failure messages.
func (g *consoleGuest) expectTransmitted(t *testing.T, port io.Reader, head uint16, want, when string) {
	t.Helper()
	buf := make([]byte, 64)
	n, err := port.Read(buf)
	if err != nil || string(buf[:n]) != want {
		t.Errorf("host read %q, %v %s; want %q", buf[:n], err, when, want)
	}
	if used := g.queues[5].takeUsed(); len(used) != 1 || used[0].id != head {
		t.Errorf("transmit queue used ring %s = %+v, want head %d", when, used, head)
	}
}

func (g *consoleGuest) sendControl(id uint32, event, value uint16) {
	var m [consoleControlSize]byte
	binary.LittleEndian.PutUint32(m[0:], id)
	binary.LittleEndian.PutUint16(m[4:], event)
	binary.LittleEndian.PutUint16(m[6:], value)
	g.transmit(g.queues[3], m[:])
	g.queues[3].takeUsed()
}

func (g *consoleGuest) receiveControl() []ctrlMsg {
	g.t.Helper()
	q := g.queues[2]
	var msgs []ctrlMsg
	for _, u := range q.takeUsed() {
		key := [2]int{q.index, int(u.id)}
		b := g.bufs[key]
		delete(g.bufs, key)
		if u.len < consoleControlSize {
			g.t.Fatalf("control message of %d bytes", u.len)
		}
		raw := g.readMem(b.addr, int(u.len))
		msgs = append(msgs, ctrlMsg{
			id:      binary.LittleEndian.Uint32(raw[0:]),
			event:   binary.LittleEndian.Uint16(raw[4:]),
			value:   binary.LittleEndian.Uint16(raw[6:]),
			payload: string(raw[consoleControlSize:]),
		})
		head := q.submit(b)
		g.bufs[[2]int{q.index, int(head)}] = b
	}
	q.kick()
	return msgs
}

// bringUp runs the multiport handshake of Linux's virtio_console and
// opens both ports. It returns every control message the device sent.
func (g *consoleGuest) bringUp() []ctrlMsg {
	g.t.Helper()
	g.postRx(g.queues[2], testCtrlBufs)
	g.postRx(g.queues[0], testRxBufs)
	g.sendControl(consoleBadID, consoleDeviceReady, 1)

	msgs := g.receiveControl()
	for _, m := range msgs {
		if m.event != consolePortAdd {
			g.t.Fatalf("control message %+v before PORT_READY, want PORT_ADD only", m)
		}
		if m.id == 1 {
			g.postRx(g.queues[4], testRxBufs)
		}
		g.sendControl(m.id, consolePortReady, 1)
	}
	more := g.receiveControl()
	for _, m := range more {
		if m.event == consoleConsolePort || (m.event == consolePortOpen && m.id == 1) {
			g.sendControl(m.id, consolePortOpen, 1)
		}
	}
	return append(msgs, more...)
}

func TestConsoleMultiportBringUp(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	if g.read32(regConfig+4) != 2 {
		t.Fatalf("max_nr_ports = %d, want 2", g.read32(regConfig+4))
	}
	msgs := g.bringUp()
	want := []ctrlMsg{
		{id: 0, event: consolePortAdd},
		{id: 1, event: consolePortAdd},
		{id: 0, event: consoleConsolePort, value: 1},
		{id: 0, event: consolePortOpen, value: 1},
		{id: 1, event: consolePortName, value: 1, payload: agentPortName},
		{id: 1, event: consolePortOpen, value: 1},
	}
	if len(msgs) != len(want) {
		t.Fatalf("control messages = %+v, want %+v", msgs, want)
	}
	for i := range want {
		if msgs[i] != want[i] {
			t.Errorf("control message %d = %+v, want %+v", i, msgs[i], want[i])
		}
	}
	for id := 0; id < 2; id++ {
		if !g.dev.Port(id).GuestOpen() {
			t.Errorf("port %d is not open after the handshake", id)
		}
	}
	if got := g.dev.Port(1).Name(); got != agentPortName {
		t.Errorf("port 1 name = %q, want %q", got, agentPortName)
	}
}

func TestConsoleDataBothWays(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	g.bringUp()
	agent := g.dev.Port(1)

	if _, err := agent.Write([]byte("hello guest")); err != nil {
		t.Fatal(err)
	}
	if got := string(g.receive(g.queues[4])); got != "hello guest" {
		t.Errorf("guest received %q on port 1, want %q", got, "hello guest")
	}
	if st := g.ackInterrupt(); st&InterruptUsedBuffer == 0 {
		t.Errorf("InterruptStatus = %#x, want the used buffer bit", st)
	}

	head := g.transmit(g.queues[5], []byte("hello host"))
	g.expectTransmitted(t, agent, head, "hello host", "on port 1")

	// The console port carries the kernel log.
	g.transmit(g.queues[1], []byte("Linux version 7.1"))
	buf := make([]byte, 64)
	n, err := g.dev.Port(0).Read(buf)
	if err != nil || string(buf[:n]) != "Linux version 7.1" {
		t.Errorf("host read %q, %v on port 0; want the kernel log line", buf[:n], err)
	}
	if _, err := g.dev.Port(0).Write([]byte("root\n")); err != nil {
		t.Fatal(err)
	}
	if got := string(g.receive(g.queues[0])); got != "root\n" {
		t.Errorf("guest received %q on port 0, want %q", got, "root\n")
	}
}

func TestConsoleHoldsDataUntilOpen(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	agent := g.dev.Port(1)
	if _, err := agent.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	if toGuest, _ := agent.Buffered(); toGuest != 5 {
		t.Fatalf("buffered toward the guest = %d, want 5", toGuest)
	}
	g.bringUp()
	if got := string(g.receive(g.queues[4])); got != "early" {
		t.Errorf("guest received %q after opening the port, want %q", got, "early")
	}

	g.sendControl(1, consolePortOpen, 0)
	if _, err := agent.Write([]byte("while closed")); err != nil {
		t.Fatal(err)
	}
	if got := g.receive(g.queues[4]); len(got) != 0 {
		t.Errorf("guest received %q on a closed port", got)
	}
	g.sendControl(1, consolePortOpen, 1)
	if got := string(g.receive(g.queues[4])); got != "while closed" {
		t.Errorf("guest received %q after reopening, want %q", got, "while closed")
	}
}

// TestConsoleHostBackPressure writes more than the device buffers through
// few guest receive buffers and checks that every byte arrives in order.
func TestConsoleHostBackPressure(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	g.bringUp()
	agent := g.dev.Port(1)

	data := make([]byte, 3*ConsoleBufferLimit+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	done := make(chan error, 1)
	go func() {
		_, err := agent.Write(data)
		done <- err
	}()

	var got []byte
	deadline := time.Now().Add(testTimeout)
	for len(got) < len(data) && time.Now().Before(deadline) {
		chunk := g.receive(g.queues[4])
		if len(chunk) == 0 {
			time.Sleep(time.Millisecond)
		}
		got = append(got, chunk...)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("guest received %d bytes, want the %d bytes written, in order", len(got), len(data))
	}
}

// TestConsoleGuestBackPressure transmits more than the device buffers
// while the host does not read, then reads everything.
func TestConsoleGuestBackPressure(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	g.bringUp()
	agent := g.dev.Port(1)

	const chains, size = 100, 1024
	var want []byte
	for i := range chains {
		chunk := bytes.Repeat([]byte{byte(i)}, size)
		want = append(want, chunk...)
		g.transmit(g.queues[5], chunk)
	}
	returned := len(g.queues[5].takeUsed())
	if returned >= chains {
		t.Fatalf("device took all %d buffers without the host reading, want back-pressure", chains)
	}
	if _, toHost := agent.Buffered(); toHost > ConsoleBufferLimit+size {
		t.Errorf("device buffers %d bytes toward the host, limit %d", toHost, ConsoleBufferLimit+size)
	}

	var got []byte
	buf := make([]byte, 4096)
	for len(got) < len(want) {
		n, err := agent.Read(buf)
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("host read %d bytes that differ from the %d transmitted", len(got), len(want))
	}
	returned += len(g.queues[5].takeUsed())
	if returned != chains {
		t.Errorf("device returned %d transmit buffers, want %d", returned, chains)
	}
}

func TestConsoleWithoutMultiport(t *testing.T) {
	g := newConsoleGuest(t, FeatureVersion1)
	g.postRx(g.queues[0], testRxBufs)
	if _, err := g.dev.Port(0).Write([]byte("hvc0")); err != nil {
		t.Fatal(err)
	}
	if got := string(g.receive(g.queues[0])); got != "hvc0" {
		t.Errorf("guest received %q, want %q", got, "hvc0")
	}
	if g.dev.Port(1).GuestOpen() {
		t.Errorf("port 1 is open without multiport")
	}
}

func TestConsoleCloseWakesReader(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	g.bringUp()
	done := make(chan error, 1)
	go func() {
		_, err := g.dev.Port(1).Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	g.dev.Close()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Errorf("Read after Close = %v, want io.EOF", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := g.dev.Port(1).Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Write after Close = %v, want io.ErrClosedPipe", err)
	}
}

func TestConsoleIgnoresBadControl(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	g.bringUp()
	g.sendControl(7, consolePortOpen, 1)  // no such port
	g.sendControl(1, consoleResize, 0)    // a device-to-driver event
	g.transmit(g.queues[3], []byte{1, 2}) // too short
	g.queues[3].takeUsed()
	if st := g.status(); st&StatusDeviceNeedsReset != 0 {
		t.Errorf("status = %#x after bad control messages, want no reset", st)
	}
	if !g.dev.Port(1).GuestOpen() {
		t.Errorf("port 1 closed by invalid control messages")
	}
}

func TestNewConsoleRejectsBadPorts(t *testing.T) {
	cases := []struct {
		name  string
		ports []ConsolePortConfig
	}{
		{"no ports", nil},
		{"two consoles", []ConsolePortConfig{{Console: true}, {Console: true}}},
		{"duplicate name", []ConsolePortConfig{{Name: "a"}, {Name: "a"}}},
		{"slash in name", []ConsolePortConfig{{Name: "a/b"}}},
		{"long name", []ConsolePortConfig{{Name: string(bytes.Repeat([]byte{'a'}, MaxConsolePortName+1))}}},
		{"too many ports", make([]ConsolePortConfig, MaxConsolePorts+1)},
	}
	for _, c := range cases {
		if _, err := NewConsole(c.ports, nil); err == nil {
			t.Errorf("%s: NewConsole succeeded", c.name)
		}
	}
}

func TestConsoleContextStopsWaiting(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	agent := g.dev.Port(1) // the guest never opens it, so nothing drains

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	n, err := agent.ReadContext(ctx, make([]byte, 8))
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadContext = %d, %v; want 0, context.DeadlineExceeded", n, err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	data := make([]byte, ConsoleBufferLimit+100)
	n, err = agent.WriteContext(ctx, data)
	if n != ConsoleBufferLimit || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WriteContext = %d, %v; want %d, context.DeadlineExceeded", n, err, ConsoleBufferLimit)
	}
	if toGuest, _ := agent.Buffered(); toGuest != ConsoleBufferLimit {
		t.Errorf("buffered toward the guest = %d, want %d", toGuest, ConsoleBufferLimit)
	}
}

// TestConsoleResetWhileHostWrites resets and sets up the device again
// while a host goroutine keeps writing, which must neither deadlock nor
// race, and data must flow again after each bring-up.
func TestConsoleResetWhileHostWrites(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	agent := g.dev.Port(1)
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("x"), 700)
		for {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			_, err := agent.WriteContext(ctx, chunk)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				writerDone <- err
				return
			}
		}
	}()

	for cycle := range 3 {
		if cycle > 0 {
			g.queues = nil
			g.bufs = map[[2]int]gbuf{}
			g.probe(DeviceIDConsole, ^uint64(0), 0)
		}
		g.bringUp()
		received := 0
		deadline := time.Now().Add(testTimeout)
		for received < 10000 && time.Now().Before(deadline) {
			received += len(g.receive(g.queues[4]))
		}
		if received < 10000 {
			t.Fatalf("cycle %d: guest received %d bytes before the deadline, want at least 10000", cycle, received)
		}
		g.write32(regStatus, 0)
		if g.dev.Port(1).GuestOpen() {
			t.Fatalf("cycle %d: port 1 still open after a reset", cycle)
		}
	}
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatalf("host writer: %v", err)
	}
}

func TestConsoleHostOpenState(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	agent := g.dev.Port(1)
	agent.SetHostOpen(false) // before the handshake, so PORT_READY gets PORT_OPEN(1, 0)
	msgs := g.bringUp()
	if last := msgs[len(msgs)-1]; last != (ctrlMsg{id: 1, event: consolePortOpen, value: 0}) {
		t.Errorf("last control message = %+v, want PORT_OPEN(1, 0)", last)
	}

	agent.SetHostOpen(true)
	msgs = g.receiveControl()
	if len(msgs) != 1 || msgs[0] != (ctrlMsg{id: 1, event: consolePortOpen, value: 1}) {
		t.Errorf("control messages after SetHostOpen(true) = %+v, want PORT_OPEN(1, 1)", msgs)
	}
	agent.SetHostOpen(true) // no change, no message
	if msgs := g.receiveControl(); len(msgs) != 0 {
		t.Errorf("control messages after a repeated SetHostOpen(true) = %+v, want none", msgs)
	}
	if !agent.HostOpen() {
		t.Errorf("HostOpen = false after SetHostOpen(true)")
	}
	agent.SetHostOpen(false)
	msgs = g.receiveControl()
	if len(msgs) != 1 || msgs[0] != (ctrlMsg{id: 1, event: consolePortOpen, value: 0}) {
		t.Errorf("control messages after SetHostOpen(false) = %+v, want PORT_OPEN(1, 0)", msgs)
	}
	if st := g.dev.State(); st.Ports[1].HostOpen {
		t.Errorf("saved state has HostOpen true after SetHostOpen(false)")
	}
}

// TestConsoleHoldStopsTransfers checks that a held console writes nothing
// into guest memory and raises no interrupt, whatever the host and the
// guest do, and moves it all on Release.
func TestConsoleHoldStopsTransfers(t *testing.T) {
	g := newConsoleGuest(t, ^uint64(0))
	g.bringUp()
	agent := g.dev.Port(1)
	g.ackInterrupt()

	g.dev.Hold()
	if _, err := agent.Write([]byte("during hold")); err != nil {
		t.Fatal(err)
	}
	head := g.transmit(g.queues[5], []byte("from guest"))
	if got := g.receive(g.queues[4]); len(got) != 0 {
		t.Errorf("guest received %q while the console was held", got)
	}
	if used := g.queues[5].takeUsed(); len(used) != 0 {
		t.Errorf("transmit queue used ring = %+v while the console was held, want it empty", used)
	}
	if _, toHost := agent.Buffered(); toHost != 0 {
		t.Errorf("host buffered %d transmitted bytes while the console was held, want 0", toHost)
	}
	if st := g.ackInterrupt(); st != 0 {
		t.Errorf("InterruptStatus = %#x while the console was held, want 0", st)
	}

	g.dev.Release()
	if got := string(g.receive(g.queues[4])); got != "during hold" {
		t.Errorf("guest received %q after Release, want %q", got, "during hold")
	}
	g.expectTransmitted(t, agent, head, "from guest", "after Release")
}
