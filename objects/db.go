package objects

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Key prefixes in the badger database. Ref names never contain NUL, so
// "l" + name + NUL is a prefix of exactly one ref's reflog.
const (
	prefixObject = 'o'
	prefixRef    = 'r'
	prefixReflog = 'l'
)

// DBOptions configures a badger-backed store.
type DBOptions struct {
	// MinFreeBytes is the free disk space that a write must leave on the
	// store's file system. A write that would go below it fails with
	// ErrDiskFull before anything is written. Zero means
	// DefaultMinFreeBytes, and a negative value disables the check.
	MinFreeBytes int64
	// NoSyncRefs skips the fsync after ref updates. Objects and refs then
	// survive a crash of the process but not of the machine.
	NoSyncRefs bool
}

// DefaultMinFreeBytes is the free space reserve of DBOptions: enough for
// badger to flush a memtable and write its manifest.
const DefaultMinFreeBytes = 128 << 20

// DB is a store backed by a badger database in a directory. Only one
// process can open it at a time; Open arranges that others reach it
// through a store server.
type DB struct {
	dir  string
	db   *badger.DB
	opts DBOptions

	// writeMu is held shared by writes and exclusively by the sweep phase
	// of GC, so no object appears or gains a ref while GC deletes.
	writeMu sync.RWMutex

	// refMu serializes ref updates, so that concurrent compare-and-swap
	// updates of one ref queue instead of failing with a badger conflict.
	refMu sync.Mutex

	// touchMu protects touched: the IDs that clients wrote or found present,
	// with the time, which GC keeps for the grace period.
	touchMu sync.Mutex
	touched map[ID]time.Time

	closeOnce sync.Once
}

// dbDir returns the badger directory inside a store directory.
func dbDir(storeDir string) string { return filepath.Join(storeDir, "db") }

// OpenDB opens or creates the badger database of a store directory in this
// process. Most callers want Open, which also serves other processes.
// Opening fails with a *LockedError when another process holds the database.
func OpenDB(storeDir string, opts DBOptions) (*DB, error) {
	if err := os.MkdirAll(dbDir(storeDir), 0o755); err != nil {
		return nil, fmt.Errorf("create store %s: %w", storeDir, err)
	}
	bopts := badger.DefaultOptions(dbDir(storeDir)).
		WithValueThreshold(1 << 10).
		WithNumVersionsToKeep(1).
		WithSyncWrites(false).
		WithBlockCacheSize(64 << 20).
		WithCompactL0OnClose(false).
		WithLogger(badgerLogger{})
	removeEmptyMemtables(dbDir(storeDir))
	db, err := badger.Open(bopts)
	if err != nil && isEmptyVlogError(err) {
		slog.Warn("store recovery: reopening after badger initialized an empty value log file left by a crash", "store", storeDir)
		db, err = badger.Open(bopts)
	}
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, &LockedError{Dir: storeDir, Holder: readHolder(storeDir)}
		}
		if errors.Is(err, syscall.ENOSPC) {
			return nil, fmt.Errorf("open store %s: %w: %v", storeDir, ErrDiskFull, err)
		}
		return nil, fmt.Errorf("open store %s: %w", storeDir, err)
	}
	writeOwner(storeDir)
	return &DB{dir: storeDir, db: db, opts: opts, touched: make(map[ID]time.Time)}, nil
}

// LockedError means another process holds the store's database.
type LockedError struct {
	Dir    string
	Holder string
}

func (e *LockedError) Error() string {
	holder := "another process"
	if e.Holder != "" {
		holder = e.Holder
	}
	return fmt.Sprintf("store %s is in use by %s", e.Dir, holder)
}

// objectKey returns the database key of an object.
func objectKey(id ID) []byte {
	k := make([]byte, 1+IDSize)
	k[0] = prefixObject
	copy(k[1:], id[:])
	return k
}

// Get returns the stored value of id.
func (d *DB) Get(id ID) ([]byte, error) {
	var val []byte
	err := d.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(objectKey(id))
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("object %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read object %s: %w", id, d.wrapErr(err))
	}
	return val, nil
}

// Has reports for each ID whether it is stored, and counts present ones as
// touched for GC.
func (d *DB) Has(ids []ID) ([]bool, error) {
	out := make([]bool, len(ids))
	err := d.db.View(func(txn *badger.Txn) error {
		for i, id := range ids {
			_, err := txn.Get(objectKey(id))
			switch {
			case err == nil:
				out[i] = true
			case errors.Is(err, badger.ErrKeyNotFound):
			default:
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up objects: %w", d.wrapErr(err))
	}
	var present []ID
	for i, ok := range out {
		if ok {
			present = append(present, ids[i])
		}
	}
	d.touch(present)
	return out, nil
}

// maxTouched bounds the touched map: beyond it, touches older than
// DefaultGCGrace are forgotten.
const maxTouched = 1 << 20

// touch records ids as recently used by a writer.
func (d *DB) touch(ids []ID) {
	if len(ids) == 0 {
		return
	}
	now := time.Now()
	d.touchMu.Lock()
	defer d.touchMu.Unlock()
	for _, id := range ids {
		d.touched[id] = now
	}
	if len(d.touched) > maxTouched {
		cutoff := now.Add(-DefaultGCGrace)
		for id, t := range d.touched {
			if t.Before(cutoff) {
				delete(d.touched, id)
			}
		}
	}
}

// Put stores the objects that are not stored yet.
func (d *DB) Put(objs []StoredObject) error {
	if len(objs) == 0 {
		return nil
	}
	d.writeMu.RLock()
	defer d.writeMu.RUnlock()

	ids := make([]ID, len(objs))
	for i, o := range objs {
		ids[i] = o.ID
	}
	have, err := d.Has(ids)
	if err != nil {
		return err
	}
	var need int64
	for i, o := range objs {
		if !have[i] {
			need += int64(len(o.Value)) + 64
		}
	}
	if need == 0 {
		return nil
	}
	if err := d.checkFree(need); err != nil {
		return err
	}

	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	for i, o := range objs {
		if have[i] {
			continue
		}
		if err := wb.Set(objectKey(o.ID), o.Value); err != nil {
			return fmt.Errorf("write object %s: %w", o.ID, d.wrapErr(err))
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write %d objects: %w", len(objs), d.wrapErr(err))
	}
	d.touch(ids)
	return nil
}

// checkFree fails with ErrDiskFull unless need bytes fit on the store's
// file system above the reserve.
//
// NOTE: badger writes through memory-mapped files, and a full disk makes
// that write fault with SIGBUS, which kills the process (seen with 96 MiB
// into a 48 MiB tmpfs and the check disabled). This check is the only guard;
// concurrent writers and other programs can still use up the reserve.
func (d *DB) checkFree(need int64) error {
	reserve := d.opts.MinFreeBytes
	if reserve < 0 {
		return nil
	}
	if reserve == 0 {
		reserve = DefaultMinFreeBytes
	}
	var st unix.Statfs_t
	if err := unix.Statfs(d.dir, &st); err != nil {
		return fmt.Errorf("check free space of %s: %w", d.dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free-need < reserve {
		return fmt.Errorf("store %s: %w: %d bytes free, a write of %d bytes must leave %d; free disk space or move the store with --store",
			d.dir, ErrDiskFull, free, need, reserve)
	}
	return nil
}

// wrapErr marks errors that come from a full disk with ErrDiskFull.
func (d *DB) wrapErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %v", ErrDiskFull, err)
	}
	if errors.Is(err, badger.ErrDBClosed) {
		return ErrClosed
	}
	return err
}

// ListIDs returns stored IDs in ascending order.
func (d *DB) ListIDs(hexPrefix string, after ID, limit int) ([]ID, error) {
	if limit <= 0 {
		limit = 1 << 16
	}
	prefix, err := hexPrefixBytes(hexPrefix)
	if err != nil {
		return nil, err
	}
	var out []ID
	err = d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: append([]byte{prefixObject}, prefix...)})
		defer it.Close()
		start := append([]byte{prefixObject}, prefix...)
		if !after.IsZero() {
			start = objectKey(after)
		}
		for it.Seek(start); it.Valid(); it.Next() {
			var id ID
			copy(id[:], it.Item().Key()[1:])
			if id == after || !matchesHexPrefix(id, hexPrefix) {
				continue
			}
			out = append(out, id)
			if len(out) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list objects: %w", d.wrapErr(err))
	}
	return out, nil
}

// Close closes the database. It is safe to call more than once.
func (d *DB) Close() error {
	var err error
	d.closeOnce.Do(func() { err = d.db.Close() })
	return err
}

// refKey and reflogPrefix build the database keys of a ref.
func refKey(name string) []byte { return append([]byte{prefixRef}, name...) }
func reflogPrefix(name string) []byte {
	return append(append([]byte{prefixReflog}, name...), 0)
}

func reflogKey(name string, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(reflogPrefix(name), uint64(t.UnixNano()))
}

// badgerLogger passes badger's warnings and errors to slog and drops its
// informational chatter.
type badgerLogger struct{}

func (badgerLogger) Errorf(f string, a ...any)   { slog.Error("badger: " + fmt.Sprintf(f, a...)) }
func (badgerLogger) Warningf(f string, a ...any) { slog.Warn("badger: " + fmt.Sprintf(f, a...)) }
func (badgerLogger) Infof(f string, a ...any)    { slog.Debug("badger: " + fmt.Sprintf(f, a...)) }
func (badgerLogger) Debugf(string, ...any)       {}

// Sync writes the database's buffered writes to disk.
func (d *DB) Sync() error {
	if err := d.db.Sync(); err != nil {
		return fmt.Errorf("sync store %s: %w", d.dir, d.wrapErr(err))
	}
	return nil
}
