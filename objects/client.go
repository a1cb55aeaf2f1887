package objects

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Client is a Backend that talks to a store server over its unix socket.
// It keeps a small pool of connections so that parallel callers do not
// wait for each other. When the server goes away (it exited after being
// idle, or crashed), the client reconnects through its dial function,
// which starts a new server when needed, and retries the request once.
type Client struct {
	sock string
	// reconnect makes sure a server listens on sock again.
	reconnect func() error

	mu     sync.Mutex
	idle   []*clientConn
	closed bool
}

type clientConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

// maxIdleConns is the number of connections a Client keeps open.
const maxIdleConns = 8

// dialServer connects to the socket and performs the hello exchange.
func dialServer(sock string) (*clientConn, error) {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &clientConn{conn: conn, r: bufio.NewReaderSize(conn, 256<<10), w: bufio.NewWriterSize(conn, 256<<10)}
	resp, err := c.roundTrip(&request{op: opHello, version: protocolVersion})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("store server at %s: %w", sock, err)
	}
	if resp.version != protocolVersion {
		conn.Close()
		return nil, fmt.Errorf("%w: store server at %s speaks version %d, this client %d", ErrProtocol, sock, resp.version, protocolVersion)
	}
	return c, nil
}

// connError marks failures of the connection itself, after which the
// request may be retried on a new one.
type connError struct{ err error }

func (e *connError) Error() string { return "connection to store server lost: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

func (c *clientConn) roundTrip(req *request) (*response, error) {
	if err := writeFrame(c.w, req.op, encodeRequest(req)); err != nil {
		return nil, &connError{err}
	}
	if err := c.w.Flush(); err != nil {
		return nil, &connError{err}
	}
	op, payload, err := readFrame(c.r)
	if err != nil {
		return nil, &connError{err}
	}
	switch op {
	case opOK:
		return decodeResponse(req.op, payload)
	case opError:
		return nil, decodeError(payload)
	}
	return nil, fmt.Errorf("%w: response op %d", ErrProtocol, op)
}

func (cl *Client) getConn() (*clientConn, error) {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(cl.idle); n > 0 {
		c := cl.idle[n-1]
		cl.idle = cl.idle[:n-1]
		cl.mu.Unlock()
		return c, nil
	}
	cl.mu.Unlock()
	return dialServer(cl.sock)
}

func (cl *Client) putConn(c *clientConn) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed || len(cl.idle) >= maxIdleConns {
		c.conn.Close()
		return
	}
	cl.idle = append(cl.idle, c)
}

// dropIdle closes every pooled connection; after a lost connection the
// others point at the same dead server.
func (cl *Client) dropIdle() {
	cl.mu.Lock()
	for _, c := range cl.idle {
		c.conn.Close()
	}
	cl.idle = nil
	cl.mu.Unlock()
}

// call sends a request and returns the response, reconnecting once.
func (cl *Client) call(req *request) (*response, error) {
	resp, _, err := cl.callRetry(req)
	return resp, err
}

// callRetry is call that also reports whether the request was sent again
// after a lost connection.
func (cl *Client) callRetry(req *request) (*response, bool, error) {
	for attempt := 0; ; attempt++ {
		c, err := cl.getConn()
		if err == nil {
			var resp *response
			resp, err = c.roundTrip(req)
			var ce *connError
			if !errors.As(err, &ce) {
				cl.putConn(c)
				return resp, attempt > 0, err
			}
			c.conn.Close()
		}
		if errors.Is(err, ErrClosed) || attempt == 1 || cl.reconnect == nil {
			return nil, attempt > 0, err
		}
		cl.dropIdle()
		slog.Info("store server connection lost, reconnecting", "socket", cl.sock, "err", err)
		if rerr := cl.reconnect(); rerr != nil {
			return nil, true, fmt.Errorf("%w; reconnecting failed: %v", err, rerr)
		}
	}
}

// Get returns an object's stored value.
func (cl *Client) Get(id ID) ([]byte, error) {
	resp, err := cl.call(&request{op: opGet, id: id})
	if err != nil {
		return nil, err
	}
	return resp.value, nil
}

// Has reports for each ID whether it is stored.
func (cl *Client) Has(ids []ID) ([]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	resp, err := cl.call(&request{op: opHas, ids: ids})
	if err != nil {
		return nil, err
	}
	if len(resp.bools) != len(ids) {
		return nil, fmt.Errorf("%w: server returned %d results for %d lookups", ErrProtocol, len(resp.bools), len(ids))
	}
	return resp.bools, nil
}

// maxPutBatch bounds the bytes of one put request.
const maxPutBatch = 8 << 20

// Put stores objects, in several requests when they are large.
func (cl *Client) Put(objs []StoredObject) error {
	for len(objs) > 0 {
		n, size := 0, 0
		for n < len(objs) && (n == 0 || size+len(objs[n].Value) <= maxPutBatch) {
			size += len(objs[n].Value)
			n++
		}
		if _, err := cl.call(&request{op: opPut, objs: objs[:n]}); err != nil {
			return err
		}
		objs = objs[n:]
	}
	return nil
}

// ListIDs returns stored IDs with a hex prefix in ascending order.
func (cl *Client) ListIDs(hexPrefix string, after ID, limit int) ([]ID, error) {
	resp, err := cl.call(&request{op: opListIDs, name: hexPrefix, after: after, limit: limit})
	if err != nil {
		return nil, err
	}
	return resp.ids, nil
}

// GetRef returns a ref's value.
func (cl *Client) GetRef(name string) (RefValue, bool, error) {
	resp, err := cl.call(&request{op: opGetRef, name: name})
	if err != nil {
		return RefValue{}, false, err
	}
	return resp.ref, resp.found, nil
}

// ListRefs returns refs whose names start with prefix.
func (cl *Client) ListRefs(prefix string) ([]RefEntry, error) {
	resp, err := cl.call(&request{op: opListRefs, name: prefix})
	if err != nil {
		return nil, err
	}
	return resp.refs, nil
}

// UpdateRefs applies ref updates atomically. When the connection is lost
// after the request was sent, the retry finds the refs already at their
// new values and reports success.
func (cl *Client) UpdateRefs(updates []RefUpdate) error {
	_, retried, err := cl.callRetry(&request{op: opUpdateRefs, updates: updates})
	var conflict *RefConflictError
	if retried && errors.As(err, &conflict) && cl.appliedBefore(updates) {
		return nil
	}
	return err
}

// appliedBefore reports whether every update's new value is in place, as
// after a retry of an update that the server applied before the connection
// was lost.
func (cl *Client) appliedBefore(updates []RefUpdate) bool {
	for _, u := range updates {
		v, found, err := cl.GetRef(u.Name)
		if err != nil || found == u.Delete || (!u.Delete && v != u.New) {
			return false
		}
	}
	return true
}

// Reflog returns a ref's reflog.
func (cl *Client) Reflog(name string) ([]ReflogEntry, error) {
	resp, err := cl.call(&request{op: opReflog, name: name})
	if err != nil {
		return nil, err
	}
	return resp.reflog, nil
}

// GC runs a collection in the server.
func (cl *Client) GC(opts GCOptions) (GCStats, error) {
	resp, err := cl.call(&request{op: opGC, gc: opts})
	if err != nil {
		return GCStats{}, err
	}
	return resp.gc, nil
}

// Close closes the client's connections.
func (cl *Client) Close() error {
	cl.mu.Lock()
	cl.closed = true
	idle := cl.idle
	cl.idle = nil
	cl.mu.Unlock()
	for _, c := range idle {
		c.conn.Close()
	}
	return nil
}
