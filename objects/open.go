package objects

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options configures Open.
type Options struct {
	// DB configures the database when this process opens it.
	DB DBOptions
	// ServerCommand is the command line of a store server, such as
	// {"/usr/bin/spore", "store", "serve"}. When no server runs, Open starts
	// it in the background with SPORE_STORE set to the store directory and
	// connects to it. When ServerCommand is empty, Open serves the database
	// in this process instead, until Close; other processes connect to it.
	ServerCommand []string
	// WaitTimeout is how long Open waits for a store that another process
	// holds without serving it. Zero means one minute.
	WaitTimeout time.Duration
	// Logf receives messages about waiting. Nil logs them with slog.
	Logf func(format string, args ...any)
}

// spawnLockName is the file whose lock serializes the start of a server.
const spawnLockName = "spawn.lock"

// Open opens the store in dir, creating it when needed, for use by many
// processes at once. It connects to the store's server when one listens on
// the socket in dir. Otherwise it starts one with ServerCommand, or with no
// ServerCommand opens the database itself and serves it to others. It waits
// with a message naming the holder while another process holds the store,
// and never returns badger's raw lock error.
func Open(dir string, opts Options) (*Store, error) {
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = time.Minute
	}
	if opts.Logf == nil {
		opts.Logf = func(format string, args ...any) { slog.Warn(fmt.Sprintf(format, args...)) }
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create store %s: %w", abs, err)
	}
	sock, err := socketPath(abs)
	if err != nil {
		return nil, err
	}

	o := &opener{dir: abs, sock: sock, opts: opts}
	s, err := o.connectOrServe()
	if err != nil {
		return nil, err
	}
	s.dir = abs
	return s, nil
}

// opener carries the state of one Open call and of the client's reconnects.
type opener struct {
	dir, sock string
	opts      Options
}

// connectOrServe returns a store that is either a client of a running
// server or the in-process owner of the database.
func (o *opener) connectOrServe() (*Store, error) {
	deadline := time.Now().Add(o.opts.WaitTimeout)
	for {
		if c, err := dialServer(o.sock); err == nil {
			return o.clientStore(c), nil
		}
		s, retry, err := o.startUnderLock(deadline)
		if err != nil || !retry {
			return s, err
		}
	}
}

// clientStore wraps a first connection in a Client store.
func (o *opener) clientStore(first *clientConn) *Store {
	cl := &Client{sock: o.sock}
	cl.reconnect = func() error { return o.ensureServer() }
	cl.putConn(first)
	return NewStore(cl)
}

// startUnderLock takes the spawn lock, checks for a server again, then
// starts one or serves in-process. retry is true when the caller should
// try to connect again.
func (o *opener) startUnderLock(deadline time.Time) (s *Store, retry bool, err error) {
	unlock, err := o.lockSpawn(deadline)
	if err != nil {
		return nil, false, err
	}
	defer unlock()

	if c, err := dialServer(o.sock); err == nil {
		return o.clientStore(c), false, nil
	}
	if len(o.opts.ServerCommand) > 0 {
		if err := o.spawnServer(deadline); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}

	db, err := o.openDBWaiting(deadline)
	if err != nil {
		return nil, false, err
	}
	srv, err := NewServer(db, 0)
	if err != nil {
		db.Close()
		return nil, false, err
	}
	done := make(chan struct{})
	go func() {
		if err := srv.Serve(); err != nil {
			slog.Warn("in-process store server stopped", "store", o.dir, "err", err)
		}
		close(done)
	}()
	s = NewStore(db)
	s.onClose = func() {
		srv.Close()
		<-done
	}
	return s, false, nil
}

// ensureServer makes sure that a server listens again after a client lost
// its connection.
func (o *opener) ensureServer() error {
	deadline := time.Now().Add(o.opts.WaitTimeout)
	for {
		if c, err := dialServer(o.sock); err == nil {
			c.conn.Close()
			return nil
		}
		if len(o.opts.ServerCommand) == 0 {
			return fmt.Errorf("the process that served store %s is gone; open the store again", o.dir)
		}
		unlock, err := o.lockSpawn(deadline)
		if err != nil {
			return err
		}
		if c, err := dialServer(o.sock); err == nil {
			c.conn.Close()
			unlock()
			return nil
		}
		err = o.spawnServer(deadline)
		unlock()
		if err != nil {
			return err
		}
	}
}

// openDBWaiting opens the database, waiting while another process holds it.
func (o *opener) openDBWaiting(deadline time.Time) (*DB, error) {
	logged := false
	for {
		db, err := OpenDB(o.dir, o.opts.DB)
		var locked *LockedError
		if !errors.As(err, &locked) {
			return db, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w, which does not serve it on %s; gave up after %v. Stop that process or wait for it to finish", locked, o.sock, o.opts.WaitTimeout)
		}
		if !logged {
			o.opts.Logf("waiting for store %s: it is in use by %s", o.dir, holderName(locked.Holder))
			logged = true
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func holderName(h string) string {
	if h == "" {
		return "another process"
	}
	return h
}

// lockSpawn takes the spawn lock, waiting with a message while another
// process starts the server.
func (o *opener) lockSpawn(deadline time.Time) (func(), error) {
	path := filepath.Join(o.dir, spawnLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	logged := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("store %s: timed out after %v waiting for %s to start the store server", o.dir, o.opts.WaitTimeout, holderName(readSpawnHolder(path)))
		}
		if !logged && time.Until(deadline) < o.opts.WaitTimeout-time.Second {
			o.opts.Logf("waiting for store %s: %s is starting the store server", o.dir, holderName(readSpawnHolder(path)))
			logged = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

func readSpawnHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	pid := strings.TrimSpace(string(b))
	if pid == "" {
		return ""
	}
	return "process " + pid
}

// serverLogName is the file in the store directory that receives the
// output of servers started by Open.
const serverLogName = "server.log"

// spawnServer starts ServerCommand in its own session and waits until it
// accepts connections on the socket.
func (o *opener) spawnServer(deadline time.Time) error {
	logPath := filepath.Join(o.dir, serverLogName)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", logPath, err)
	}
	defer logFile.Close()
	logStart, _ := logFile.Seek(0, 2)

	argv := o.opts.ServerCommand
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "SPORE_STORE="+o.dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start store server %q: %w", strings.Join(argv, " "), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	for {
		if c, err := dialServer(o.sock); err == nil {
			c.conn.Close()
			return nil
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("store server %q exited before it served %s (%v): %s", strings.Join(argv, " "), o.dir, werr, logTail(logPath, logStart))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("store server (process %d) did not accept connections on %s within %v: %s", cmd.Process.Pid, o.sock, o.opts.WaitTimeout, logTail(logPath, logStart))
		}
	}
}

// logTail returns what a server wrote to its log since offset, shortened.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) <= offset {
		return "no output in " + path
	}
	out := strings.TrimSpace(string(b[offset:]))
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return out
}

// ServeOptions configures ServeDir.
type ServeOptions struct {
	// DB configures the database.
	DB DBOptions
	// IdleTimeout is how long the server runs without clients; zero means
	// DefaultIdleTimeout and a negative value runs until killed.
	IdleTimeout time.Duration
	// WaitTimeout is how long to wait for the database while another
	// process holds it, such as a server that is exiting. Zero means 30 s.
	WaitTimeout time.Duration
}

// ServeDir runs a store server for dir until it is idle for the idle
// timeout. The spore binary runs it as `spore store serve`; other programs
// that embed this package can run it from their own ServerCommand.
func ServeDir(dir string, opts ServeOptions) error {
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = 30 * time.Second
	}
	idle := opts.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	if idle < 0 {
		idle = 0
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	o := &opener{dir: abs, opts: Options{DB: opts.DB, WaitTimeout: opts.WaitTimeout,
		Logf: func(format string, args ...any) { slog.Info(fmt.Sprintf(format, args...)) }}}
	db, err := o.openDBWaiting(time.Now().Add(opts.WaitTimeout))
	if err != nil {
		return err
	}
	srv, err := NewServer(db, idle)
	if err != nil {
		db.Close()
		return err
	}
	err = srv.Serve()
	if cerr := closeWithin(db, serverCloseTimeout); err == nil {
		err = cerr
	}
	return err
}

// serverCloseTimeout bounds how long ServeDir waits for the database to
// close.
const serverCloseTimeout = 30 * time.Second

// closeWithin closes db, or gives up after timeout so that a server whose
// database cannot be flushed (its directory was removed, or the disk
// failed) still exits. badger keeps retrying a failed memtable flush
// forever, which blocks its Close.
func closeWithin(db *DB, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- db.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("close store %s: %w", db.dir, err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("close store %s: timed out after %v; writes since the last ref update may be lost", db.dir, timeout)
	}
}
