package objects

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// socketName is the store server's unix socket inside the store directory.
const socketName = "store.sock"

// DefaultIdleTimeout is how long a store server started by Open waits
// without clients before it exits.
const DefaultIdleTimeout = 30 * time.Second

// maxSocketPath is the longest unix socket path Linux accepts (108 bytes
// including the terminating NUL).
const maxSocketPath = 107

// socketPath returns the store server's socket path and checks its length.
func socketPath(storeDir string) (string, error) {
	abs, err := filepath.Abs(storeDir)
	if err != nil {
		return "", err
	}
	p := filepath.Join(abs, socketName)
	if len(p) > maxSocketPath {
		return "", fmt.Errorf("store path %s is too long: its socket path needs at most %d bytes, has %d; use a shorter --store path", abs, maxSocketPath, len(p))
	}
	return p, nil
}

// socketMode returns the permissions of the socket: read and write for the
// owner, and for the group too when the group may write the store directory.
func socketMode(storeDir string) os.FileMode {
	st, err := os.Stat(storeDir)
	if err == nil && st.Mode().Perm()&0o020 != 0 {
		return 0o660
	}
	return 0o600
}

// Server serves a DB to clients over the store's unix socket.
type Server struct {
	db *DB
	ln *net.UnixListener

	// idle is how long the server runs without connections; zero means
	// forever.
	idle time.Duration

	// mu protects conns and lastActive.
	mu         sync.Mutex
	conns      map[net.Conn]struct{}
	lastActive time.Time

	wg     sync.WaitGroup
	closed chan struct{}
	once   sync.Once
}

// NewServer listens on the socket of the store that db belongs to. The
// caller must hold the database (it opened db), which makes it the only
// server of the directory, so a socket file left by a crashed server is
// removed first. idle is the time without clients after which Serve
// returns; zero serves until Close.
func NewServer(db *DB, idle time.Duration) (*Server, error) {
	sock, err := socketPath(db.dir)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", sock, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", sock, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(sock, socketMode(db.dir)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set permissions of %s: %w", sock, err)
	}
	return &Server{
		db: db, ln: ln, idle: idle,
		conns: make(map[net.Conn]struct{}), lastActive: time.Now(),
		closed: make(chan struct{}),
	}, nil
}

// Serve accepts clients until Close, or until no client was connected for
// the idle timeout. It closes the listener before it returns, and waits
// for connections that were accepted to finish.
func (s *Server) Serve() error {
	if s.idle > 0 {
		go s.watchIdle()
	}
	slog.Info("store server started", "store", s.db.dir, "pid", os.Getpid())
	var err error
	for {
		conn, aerr := s.ln.Accept()
		if aerr != nil {
			select {
			case <-s.closed:
			default:
				err = fmt.Errorf("accept: %w", aerr)
			}
			break
		}
		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveConn(conn)
	}
	s.wg.Wait()
	slog.Info("store server stopped", "store", s.db.dir, "pid", os.Getpid())
	return err
}

// watchIdle closes the listener once no connection existed for s.idle.
func (s *Server) watchIdle() {
	tick := time.NewTicker(min(s.idle/4+time.Millisecond, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-tick.C:
		}
		if _, err := os.Stat(dbDir(s.db.dir)); errors.Is(err, os.ErrNotExist) {
			slog.Error("store directory was removed, stopping the store server", "store", s.db.dir)
			s.Close()
			return
		}
		s.mu.Lock()
		idle := len(s.conns) == 0 && time.Since(s.lastActive) >= s.idle
		s.mu.Unlock()
		if idle {
			slog.Info("store server idle, exiting", "store", s.db.dir, "idle", s.idle)
			s.shutdown()
			return
		}
	}
}

// shutdown stops accepting clients.
func (s *Server) shutdown() {
	s.once.Do(func() {
		close(s.closed)
		s.ln.Close()
	})
}

// Close stops accepting clients and closes the connections of the current
// ones; Serve then returns.
func (s *Server) Close() {
	s.shutdown()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// serveConn runs the request loop of one client.
func (s *Server) serveConn(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.lastActive = time.Now()
		s.mu.Unlock()
	}()
	r := bufio.NewReaderSize(conn, 256<<10)
	w := bufio.NewWriterSize(conn, 256<<10)

	op, payload, err := readFrame(r)
	if err != nil {
		return
	}
	hello, err := decodeRequest(op, payload)
	if err == nil && (hello.op != opHello || hello.version != protocolVersion) {
		err = fmt.Errorf("%w: client speaks protocol version %d, this server speaks %d; use one spore version for clients and server", ErrProtocol, hello.version, protocolVersion)
	}
	if err != nil {
		_ = writeFrame(w, opError, encodeError(err))
		w.Flush()
		return
	}
	if err := writeFrame(w, opOK, encodeResponse(opHello, &response{version: protocolVersion})); err != nil || w.Flush() != nil {
		return
	}

	for {
		op, payload, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				slog.Warn("store server: read request failed", "err", err)
			}
			return
		}
		req, err := decodeRequest(op, payload)
		var resp *response
		if err == nil {
			resp, err = s.handle(req)
		}
		if err != nil {
			err = writeFrame(w, opError, encodeError(err))
		} else {
			err = writeFrame(w, opOK, encodeResponse(op, resp))
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return
		}
	}
}

// handle runs one request against the database.
func (s *Server) handle(req *request) (*response, error) {
	db := s.db
	resp := &response{}
	var err error
	switch req.op {
	case opGet:
		resp.value, err = db.Get(req.id)
	case opHas:
		resp.bools, err = db.Has(req.ids)
	case opPut:
		err = db.Put(req.objs)
	case opListIDs:
		if _, perr := hexPrefixBytes(req.name); perr != nil {
			return nil, perr
		}
		resp.ids, err = db.ListIDs(req.name, req.after, req.limit)
	case opGetRef:
		resp.ref, resp.found, err = db.GetRef(req.name)
	case opListRefs:
		resp.refs, err = db.ListRefs(req.name)
	case opUpdateRefs:
		err = db.UpdateRefs(req.updates)
	case opReflog:
		resp.reflog, err = db.Reflog(req.name)
	case opGC:
		resp.gc, err = db.GC(req.gc)
	default:
		err = fmt.Errorf("%w: op %d is not valid after hello", ErrProtocol, req.op)
	}
	return resp, err
}
