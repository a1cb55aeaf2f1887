package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrClosed is returned by Client methods after Close or after the
// connection failed. Sessions keep running in the guest, and a new Client
// can attach to them.
var ErrClosed = errors.New("agent client closed")

// RemoteError is an Error message from the Server.
type RemoteError struct {
	Session uint32
	Code    ErrorCode
	Message string
}

func (e *RemoteError) Error() string {
	if e.Session != 0 {
		return fmt.Sprintf("guest agent: session %d: %s", e.Session, e.Message)
	}
	return "guest agent: " + e.Message
}

// ClientOptions configures Dial. The zero value is usable.
type ClientOptions struct {
	// HelloInterval is how long Dial waits for a HelloReply before it sends
	// Hello again. Zero means 500ms.
	HelloInterval time.Duration

	// SkipPreamble leaves out the zero bytes before the first Hello. Only a
	// Server that has never read from this stream can do without them.
	SkipPreamble bool

	// Logger receives protocol errors the Client recovers from. Nil
	// discards them.
	Logger *log.Logger
}

// Client is the host side of the agent protocol on one byte stream. Its
// methods are safe for concurrent use.
type Client struct {
	fr  *FrameReader
	fw  *FrameWriter
	rwc []io.Closer
	log *log.Logger

	mu            sync.Mutex
	cond          *sync.Cond // signals sendq changes and closing
	sendq         []Message
	writing       bool // the writer goroutine is writing a message taken from sendq
	closed        bool
	err           error // cause of the stop, returned by later calls
	hello         *HelloReply
	nonce         uint64
	pongs         map[uint64]chan AgentInfo
	identity      map[string]chan *IdentityDone
	freezes       map[uint64]chan *FreezeDone
	poweroff      chan error // pending Poweroff, if any
	poweroffNonce uint64
	sessions      map[uint32]*Session
	nextID        uint32
	done          chan struct{} // closed when the reader stops
}

// Dial starts a connection on the stream r/w: it writes the preamble and a
// Hello and waits for the HelloReply, sending Hello again every
// HelloInterval. If r or w is an io.Closer, Close closes it.
func Dial(ctx context.Context, r io.Reader, w io.Writer, opts ClientOptions) (*Client, error) {
	c := &Client{
		fr:       NewFrameReader(r),
		fw:       NewFrameWriter(w),
		log:      opts.Logger,
		pongs:    make(map[uint64]chan AgentInfo),
		identity: make(map[string]chan *IdentityDone),
		freezes:  make(map[uint64]chan *FreezeDone),
		sessions: make(map[uint32]*Session),
		nextID:   rand.Uint32N(1<<30) + 1,
		done:     make(chan struct{}),
	}
	if c.log == nil {
		c.log = log.New(io.Discard, "", 0)
	}
	for _, x := range []any{r, w} {
		if cl, ok := x.(io.Closer); ok {
			c.rwc = append(c.rwc, cl)
		}
	}
	c.cond = sync.NewCond(&c.mu)

	interval := opts.HelloInterval
	if interval == 0 {
		interval = 500 * time.Millisecond
	}

	helloc := make(chan *HelloReply, 1)
	errc := make(chan error, 1)
	go c.readLoop(helloc, errc)
	go c.writeLoop(!opts.SkipPreamble)

	nonce := rand.Uint64()
	hello := &Hello{MinVersion: MinProtocolVersion, MaxVersion: ProtocolVersion, Nonce: nonce}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	c.send(hello)
	for {
		select {
		case rep := <-helloc:
			if rep.Nonce != nonce {
				continue // a reply to a Hello of an earlier host
			}
			c.mu.Lock()
			c.hello = rep
			c.mu.Unlock()
			return c, nil
		case err := <-errc:
			c.shutdown()
			return nil, fmt.Errorf("agent: handshake: %w", err)
		case <-tick.C:
			c.send(hello)
		case <-ctx.Done():
			c.shutdown()
			return nil, fmt.Errorf("agent: handshake: no HelloReply from the guest agent: %w", ctx.Err())
		}
	}
}

// Hello returns the Server's reply to the handshake: the protocol version,
// the agent state and every session the agent keeps.
func (c *Client) Hello() HelloReply {
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.hello
}

// Close stops the Client and closes the stream. Sessions keep running in
// the guest. Close first gives queued messages (such as the Release of a
// finished session) up to a second to be written, then waits until no
// output writer is in use, so the offsets of each Session are final when
// it returns.
func (c *Client) Close() error {
	c.mu.Lock()
	deadline := time.Now().Add(time.Second)
	for (len(c.sendq) > 0 || c.writing) && !c.closed && time.Now().Before(deadline) {
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
		c.mu.Lock()
	}
	c.mu.Unlock()
	return c.shutdown()
}

// shutdown stops the Client without waiting for queued messages.
func (c *Client) shutdown() error {
	c.stop(ErrClosed)
	for _, cl := range c.rwc {
		cl.Close()
	}
	c.mu.Lock()
	sessions := make([]*Session, 0, len(c.sessions))
	for _, s := range c.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()
	for _, s := range sessions {
		s.deliverWG.Wait()
	}
	return nil
}

// stop marks the Client as stopped with err and fails every waiter.
func (c *Client) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.err = err
	c.cond.Broadcast()
	for _, s := range c.sessions {
		s.failLocked(err)
	}
}

// send queues m for the writer goroutine. It never blocks on the stream,
// so the reader goroutine can send Acks while the guest is busy.
func (c *Client) send(m Message) {
	c.mu.Lock()
	c.sendLocked(m)
	c.mu.Unlock()
}

func (c *Client) sendLocked(m Message) {
	if c.closed {
		return
	}
	c.sendq = append(c.sendq, m)
	c.cond.Broadcast()
}

// writeLoop writes the preamble, when requested, and then the queued
// messages in order. It runs on its own goroutine, so a guest that does not
// read yet cannot block Dial past its context.
func (c *Client) writeLoop(preamble bool) {
	if preamble {
		if _, err := c.fw.w.Write(make([]byte, PreambleSize)); err != nil {
			c.stop(fmt.Errorf("%w: write preamble: %v", ErrClosed, err))
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.sendq) == 0 && !c.closed {
			c.cond.Wait()
		}
		if c.closed {
			return
		}
		m := c.sendq[0]
		c.sendq = c.sendq[1:]
		c.writing = true
		c.mu.Unlock()
		err := c.fw.WriteFrame(m)
		c.mu.Lock()
		c.writing = false
		if err != nil {
			c.mu.Unlock()
			c.stop(fmt.Errorf("%w: write %s: %v", ErrClosed, m.Type(), err))
			c.mu.Lock()
			return
		}
	}
}

func (c *Client) readLoop(helloc chan<- *HelloReply, errc chan<- error) {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if errors.Is(err, ErrCorruptFrame) {
			c.log.Printf("agent client: skipping corrupt input: %v", err)
			c.resync()
			continue
		}
		if err != nil {
			select {
			case errc <- err:
			default:
			}
			c.stop(fmt.Errorf("%w: read: %v", ErrClosed, err))
			return
		}
		m, err := Decode(f)
		if err != nil {
			c.log.Printf("agent client: ignoring message: %v", err)
			continue
		}
		c.dispatch(m, helloc, errc)
	}
}

func (c *Client) dispatch(m Message, helloc chan<- *HelloReply, errc chan<- error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m := m.(type) {
	case *HelloReply:
		select {
		case helloc <- m:
		default:
		}
	case *Pong:
		if c.poweroff != nil && m.Nonce == c.poweroffNonce {
			c.poweroff <- nil
			c.poweroff = nil
			return
		}
		if ch, ok := c.pongs[m.Nonce]; ok {
			delete(c.pongs, m.Nonce)
			ch <- m.Info
		}
	case *IdentityDone:
		if ch, ok := c.identity[m.Generation]; ok {
			delete(c.identity, m.Generation)
			ch <- m
		}
	case *FreezeDone:
		if ch, ok := c.freezes[m.Nonce]; ok {
			delete(c.freezes, m.Nonce)
			ch <- m
		}
	case *Error:
		rerr := &RemoteError{Session: m.Session, Code: m.Code, Message: m.Message}
		if s := c.sessions[m.Session]; s != nil {
			s.remoteErrorLocked(rerr)
			return
		}
		if m.Session == 0 && m.Code == CodeBadRequest && c.poweroff != nil {
			c.poweroff <- rerr
			c.poweroff = nil
			return
		}
		if m.Code == CodeVersion && c.hello == nil {
			select {
			case errc <- rerr:
			default:
			}
			return
		}
		c.log.Printf("agent client: %v", rerr)
	case *Started:
		if s := c.sessions[m.Session]; s != nil {
			s.startedLocked(m.PID)
		}
	case *Status:
		if s := c.sessions[m.Info.ID]; s != nil {
			s.statusLocked(m.Info)
		}
	case *Data:
		if s := c.sessions[m.Session]; s != nil {
			s.dataLocked(m)
		}
	case *Ack:
		if s := c.sessions[m.Session]; s != nil {
			s.stdinAckLocked(m)
		}
	case *Exit:
		if s := c.sessions[m.Session]; s != nil {
			s.exitLocked(m)
		}
	default:
		c.log.Printf("agent client: ignoring %s from the guest", m.Type())
	}
}

// resync sends a Rewind for both output streams of every session, from the
// offsets this Client received, because corrupt input may have swallowed
// Data or Exit messages.
func (c *Client) resync() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		if s.started {
			for _, st := range []Stream{Stdout, Stderr} {
				c.sendLocked(&Ack{Session: s.id, Stream: st, Offset: s.recv[st], Rewind: true})
			}
		}
	}
}

// Ping returns the agent's current state.
func (c *Client) Ping(ctx context.Context) (AgentInfo, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return AgentInfo{}, c.err
	}
	c.nonce++
	nonce := c.nonce
	ch := make(chan AgentInfo, 1)
	c.pongs[nonce] = ch
	c.sendLocked(&Ping{Nonce: nonce})
	c.mu.Unlock()

	select {
	case info := <-ch:
		return info, nil
	case <-c.done:
		return AgentInfo{}, c.closedErr()
	case <-ctx.Done():
		return AgentInfo{}, fmt.Errorf("agent: ping: %w", ctx.Err())
	}
}

// SetIdentity applies a fork identity in the guest and waits until the
// agent has run its hooks. The agent starts no session until it is done.
func (c *Client) SetIdentity(ctx context.Context, m *SetIdentity) error {
	if err := m.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.err
	}
	ch := make(chan *IdentityDone, 1)
	c.identity[m.Generation] = ch
	c.sendLocked(m)
	c.mu.Unlock()

	select {
	case done := <-ch:
		if done.Error != "" {
			return fmt.Errorf("guest agent: set identity %s: %s", m.Generation, done.Error)
		}
		return nil
	case <-c.done:
		return c.closedErr()
	case <-ctx.Done():
		return fmt.Errorf("agent: set identity %s: %w", m.Generation, ctx.Err())
	}
}

// Freeze requests that the guest sync and freeze its root file system, and waits
// until it is frozen. Writes in the guest then block until Thaw.
func (c *Client) Freeze(ctx context.Context) error { return c.freeze(ctx, false) }

// Thaw requests that the guest thaw its root file system after Freeze, and waits
// until it is done. Thawing a file system that is not frozen succeeds.
func (c *Client) Thaw(ctx context.Context) error { return c.freeze(ctx, true) }

func (c *Client) freeze(ctx context.Context, thaw bool) error {
	op := "freeze"
	if thaw {
		op = "thaw"
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.err
	}
	c.nonce++
	nonce := c.nonce
	ch := make(chan *FreezeDone, 1)
	c.freezes[nonce] = ch
	c.sendLocked(&Freeze{Nonce: nonce, Thaw: thaw})
	c.mu.Unlock()

	select {
	case done := <-ch:
		if done.Error != "" {
			return fmt.Errorf("guest agent: %s the root file system: %s", op, done.Error)
		}
		return nil
	case <-c.done:
		return c.closedErr()
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.freezes, nonce)
		c.mu.Unlock()
		return fmt.Errorf("agent: %s the root file system: %w", op, ctx.Err())
	}
}

// Poweroff requests a sync and power-off of the guest, and waits until the
// agent confirms that it is powering off.
func (c *Client) Poweroff(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.err
	}
	if c.poweroff != nil {
		c.mu.Unlock()
		return fmt.Errorf("agent: poweroff: another poweroff request is pending")
	}
	c.nonce++
	ch := make(chan error, 1)
	c.poweroff, c.poweroffNonce = ch, c.nonce
	c.sendLocked(&Poweroff{Nonce: c.nonce})
	c.mu.Unlock()

	select {
	case err := <-ch:
		return err
	case <-c.done:
		return c.closedErr()
	case <-ctx.Done():
		return fmt.Errorf("agent: poweroff: %w", ctx.Err())
	}
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}
