package objects

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// GC deletes every object that no ref and no reflog entry reaches, and that
// no writer touched within the grace period.
//
// It runs in three steps. First it takes the roots (refs and reflog entries)
// from one snapshot and marks their closure while writers continue. Then,
// holding writeMu exclusively so no write is in flight, it marks the
// closure of every object touched within the grace period and of refs
// changed since the snapshot, and deletes the unmarked objects that the
// snapshot already contained. Objects written after the snapshot are newer
// than it and never deleted.
func (d *DB) GC(opts GCOptions) (GCStats, error) {
	var stats GCStats
	grace := opts.Grace
	if grace <= 0 {
		grace = DefaultGCGrace
	}

	if opts.ExpireReflogs > 0 {
		n, err := d.expireReflogs(time.Now().Add(-opts.ExpireReflogs), opts.DryRun)
		if err != nil {
			return stats, err
		}
		stats.ExpiredReflogEntries = n
	}

	snap := d.db.NewTransaction(false)
	defer snap.Discard()
	readTs := snap.ReadTs()
	roots, err := gcRoots(snap)
	if err != nil {
		return stats, fmt.Errorf("gc: read refs: %w", d.wrapErr(err))
	}
	stats.Roots = len(roots)

	marked := make(map[ID]struct{})
	if err := d.markFrom(snap, roots, marked, &stats); err != nil {
		return stats, err
	}

	d.writeMu.Lock()
	defer d.writeMu.Unlock()

	late := d.db.NewTransaction(false)
	defer late.Discard()
	lateRoots, err := gcRoots(late)
	if err != nil {
		return stats, fmt.Errorf("gc: read refs: %w", d.wrapErr(err))
	}
	recent := d.recentlyTouched(grace)
	before := len(marked)
	if err := d.markFrom(late, append(lateRoots, recent...), marked, &stats); err != nil {
		return stats, err
	}
	stats.Reachable = before
	stats.KeptRecent = len(marked) - before

	var doomed []ID
	it := snap.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{prefixObject}})
	for it.Seek([]byte{prefixObject}); it.Valid(); it.Next() {
		item := it.Item()
		if item.Version() > readTs {
			continue
		}
		var id ID
		copy(id[:], item.Key()[1:])
		if _, ok := marked[id]; ok {
			continue
		}
		doomed = append(doomed, id)
		stats.DeletedBytes += item.EstimatedSize()
	}
	it.Close()
	stats.Deleted = len(doomed)
	if opts.DryRun || len(doomed) == 0 {
		return stats, nil
	}

	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	for _, id := range doomed {
		if err := wb.Delete(objectKey(id)); err != nil {
			return stats, fmt.Errorf("gc: delete object %s: %w", id, d.wrapErr(err))
		}
	}
	if err := wb.Flush(); err != nil {
		return stats, fmt.Errorf("gc: delete %d objects: %w", len(doomed), d.wrapErr(err))
	}
	if err := d.db.Sync(); err != nil {
		return stats, fmt.Errorf("gc: sync: %w", d.wrapErr(err))
	}
	d.reclaimValueLog()
	return stats, nil
}

// expireReflogs deletes reflog entries recorded before cutoff and returns
// how many there were. With dryRun it only counts them.
func (d *DB) expireReflogs(cutoff time.Time, dryRun bool) (int, error) {
	var keys [][]byte
	err := d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{prefixReflog}})
		defer it.Close()
		for it.Seek([]byte{prefixReflog}); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < 10 || k[len(k)-9] != 0 {
				continue
			}
			if time.Unix(0, int64(beUint64(k[len(k)-8:]))).Before(cutoff) {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil || dryRun || len(keys) == 0 {
		return len(keys), err
	}
	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return 0, fmt.Errorf("gc: expire reflog entries: %w", d.wrapErr(err))
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("gc: expire reflog entries: %w", d.wrapErr(err))
	}
	return len(keys), nil
}

// reclaimValueLog rewrites value log files that are mostly garbage, so
// deleted objects give their disk space back.
func (d *DB) reclaimValueLog() {
	for i := 0; i < 100; i++ {
		err := d.db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return
		}
		if err != nil {
			slog.Warn("store gc: value log rewrite failed", "store", d.dir, "err", err)
			return
		}
	}
}

// recentlyTouched returns the IDs touched within grace and drops older ones
// from the touched map.
func (d *DB) recentlyTouched(grace time.Duration) []Link {
	cutoff := time.Now().Add(-grace)
	d.touchMu.Lock()
	defer d.touchMu.Unlock()
	out := make([]Link, 0, len(d.touched))
	for id, t := range d.touched {
		if t.Before(cutoff) {
			delete(d.touched, id)
			continue
		}
		out = append(out, Link{ID: id})
	}
	return out
}

// gcRoots returns the targets of every ref and reflog entry.
func gcRoots(txn *badger.Txn) ([]Link, error) {
	var roots []Link
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{prefixRef}})
	for it.Seek([]byte{prefixRef}); it.Valid(); it.Next() {
		raw, err := it.Item().ValueCopy(nil)
		if err != nil {
			it.Close()
			return nil, err
		}
		if v, err := decodeRefValue(raw); err == nil && v.Symbolic == "" {
			roots = append(roots, Link{ID: v.ID})
		}
	}
	it.Close()
	err := iterateReflogs(txn, []byte{prefixReflog}, func(_ string, e ReflogEntry) {
		for _, id := range []ID{e.Old, e.New} {
			if !id.IsZero() {
				roots = append(roots, Link{ID: id})
			}
		}
	})
	return roots, err
}

// markFrom adds the closure of roots to marked. Objects that are missing
// or do not decode are counted and otherwise skipped, so a damaged store
// can still be collected; fsck reports them.
func (d *DB) markFrom(txn *badger.Txn, roots []Link, marked map[ID]struct{}, stats *GCStats) error {
	stack := append([]Link(nil), roots...)
	for len(stack) > 0 {
		l := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := marked[l.ID]; ok {
			continue
		}
		marked[l.ID] = struct{}{}
		if l.Kind == KindChunk {
			continue
		}
		item, err := txn.Get(objectKey(l.ID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			stats.MissingReached++
			continue
		}
		if err != nil {
			return fmt.Errorf("gc: read object %s: %w", l.ID, d.wrapErr(err))
		}
		var kind Kind
		var payload []byte
		err = item.Value(func(v []byte) error {
			if len(v) >= 2 && Kind(v[1]) == KindChunk {
				// Chunks have no links: skip decompressing and hashing.
				return nil
			}
			k, p, derr := decodeStored(l.ID, v)
			if derr == nil && k != KindChunk {
				kind, payload = k, bytes.Clone(p)
			}
			return derr
		})
		if err != nil || payload == nil {
			// Corrupt objects and chunks reached through a named tree
			// have no links to follow.
			continue
		}
		links, err := Links(kind, payload)
		if err != nil {
			continue
		}
		stack = append(stack, links...)
	}
	return nil
}
