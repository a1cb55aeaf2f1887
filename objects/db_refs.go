package objects

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Stored ref values start with a tag byte.
const (
	refTagID       byte = 1
	refTagSymbolic byte = 2
)

func encodeRefValue(v RefValue) []byte {
	if v.Symbolic != "" {
		return append([]byte{refTagSymbolic}, v.Symbolic...)
	}
	return append([]byte{refTagID}, v.ID[:]...)
}

func decodeRefValue(b []byte) (RefValue, error) {
	var v RefValue
	switch {
	case len(b) == 1+IDSize && b[0] == refTagID:
		copy(v.ID[:], b[1:])
		return v, nil
	case len(b) > 1 && b[0] == refTagSymbolic:
		v.Symbolic = string(b[1:])
		return v, nil
	}
	return v, fmt.Errorf("%w: stored ref value of %d bytes is invalid", ErrCorrupt, len(b))
}

func encodeReflogEntry(e ReflogEntry) []byte {
	enc := encoder{}
	enc.byte1(1)
	enc.varint(e.Time.UnixNano())
	enc.id(e.Old)
	enc.id(e.New)
	enc.str(e.Reason)
	return enc.buf
}

func decodeReflogEntry(b []byte) (ReflogEntry, error) {
	d := decoder{buf: b}
	if v := d.byte1(); d.err == nil && v != 1 {
		return ReflogEntry{}, fmt.Errorf("%w: reflog entry version %d", ErrCorrupt, v)
	}
	e := ReflogEntry{Time: time.Unix(0, d.varint()).UTC(), Old: d.id(), New: d.id(), Reason: d.str()}
	d.end()
	return e, d.err
}

// GetRef returns a ref's value.
func (d *DB) GetRef(name string) (RefValue, bool, error) {
	var v RefValue
	found := false
	err := d.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(refKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		raw, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v, err = decodeRefValue(raw)
		found = err == nil
		return err
	})
	if err != nil {
		return v, false, fmt.Errorf("read ref %s: %w", name, d.wrapErr(err))
	}
	return v, found, nil
}

// ListRefs returns refs whose names start with prefix.
func (d *DB) ListRefs(prefix string) ([]RefEntry, error) {
	var out []RefEntry
	err := d.db.View(func(txn *badger.Txn) error {
		p := refKey(prefix)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: p})
		defer it.Close()
		for it.Seek(p); it.Valid(); it.Next() {
			raw, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			name := string(it.Item().Key()[1:])
			v, err := decodeRefValue(raw)
			if err != nil {
				return fmt.Errorf("ref %s: %w", name, err)
			}
			out = append(out, RefEntry{Name: name, Value: v})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list refs: %w", d.wrapErr(err))
	}
	return out, nil
}

// UpdateRefs applies the updates in one transaction, checks that every new
// target object is stored, appends reflog entries and syncs to disk.
func (d *DB) UpdateRefs(updates []RefUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	d.writeMu.RLock()
	defer d.writeMu.RUnlock()
	if err := d.checkFree(int64(len(updates)) * 512); err != nil {
		return err
	}

	d.refMu.Lock()
	defer d.refMu.Unlock()
	var touched []ID
	err := d.db.Update(func(txn *badger.Txn) error {
		touched = touched[:0]
		for _, u := range updates {
			ids, err := d.applyRefUpdate(txn, u)
			if err != nil {
				return err
			}
			touched = append(touched, ids...)
		}
		return nil
	})
	if err != nil {
		var conflict *RefConflictError
		if errors.As(err, &conflict) || errors.Is(err, ErrNotFound) {
			return err
		}
		if errors.Is(err, badger.ErrConflict) {
			return fmt.Errorf("update refs: a concurrent update of the same ref won; reread the ref and retry: %w", err)
		}
		return fmt.Errorf("update refs: %w", d.wrapErr(err))
	}
	d.touch(touched)
	if !d.opts.NoSyncRefs {
		if err := d.db.Sync(); err != nil {
			return fmt.Errorf("sync store after ref update: %w", d.wrapErr(err))
		}
	}
	return nil
}

// applyRefUpdate performs one update inside txn and returns the object IDs
// it referenced.
func (d *DB) applyRefUpdate(txn *badger.Txn, u RefUpdate) ([]ID, error) {
	cur, exists, err := txnGetRef(txn, u.Name)
	if err != nil {
		return nil, err
	}
	switch u.Expect {
	case ExpectAbsent:
		if exists {
			return nil, &RefConflictError{Name: u.Name, Exists: true, Current: cur, Expect: u.Expect}
		}
	case ExpectValue:
		if !exists || cur != u.Old {
			return nil, &RefConflictError{Name: u.Name, Exists: exists, Current: cur, Expect: u.Expect, Old: u.Old}
		}
	}

	entry := ReflogEntry{Time: u.Time, Reason: u.Reason}
	if entry.Time.IsZero() {
		entry.Time = time.Now()
	}
	if exists {
		entry.Old = cur.ID
	}
	var ids []ID
	if u.Delete {
		if !exists {
			return nil, fmt.Errorf("delete ref %s: %w", u.Name, ErrNotFound)
		}
		if err := txn.Delete(refKey(u.Name)); err != nil {
			return nil, err
		}
	} else {
		if u.New.Symbolic == "" {
			if u.New.ID.IsZero() {
				return nil, fmt.Errorf("update ref %s: new value is empty", u.Name)
			}
			if _, err := txn.Get(objectKey(u.New.ID)); errors.Is(err, badger.ErrKeyNotFound) {
				return nil, fmt.Errorf("update ref %s: target object %s: %w; write the object before the ref", u.Name, u.New.ID, ErrNotFound)
			} else if err != nil {
				return nil, err
			}
			ids = append(ids, u.New.ID)
		}
		if err := txn.Set(refKey(u.Name), encodeRefValue(u.New)); err != nil {
			return nil, err
		}
		entry.New = u.New.ID
	}
	return ids, appendReflog(txn, u.Name, entry)
}

func txnGetRef(txn *badger.Txn, name string) (RefValue, bool, error) {
	item, err := txn.Get(refKey(name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return RefValue{}, false, nil
	}
	if err != nil {
		return RefValue{}, false, err
	}
	raw, err := item.ValueCopy(nil)
	if err != nil {
		return RefValue{}, false, err
	}
	v, err := decodeRefValue(raw)
	return v, err == nil, err
}

// appendReflog writes entry under a key that sorts after every earlier
// entry of the ref, bumping the timestamp when two entries share one.
func appendReflog(txn *badger.Txn, name string, entry ReflogEntry) error {
	p := reflogPrefix(name)
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: p})
	last := time.Time{}
	seek := append(bytes.Clone(p), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	it.Seek(seek)
	if it.Valid() {
		k := it.Item().Key()
		if len(k) == len(p)+8 {
			last = time.Unix(0, int64(beUint64(k[len(p):])))
		}
	}
	it.Close()
	if !entry.Time.After(last) {
		entry.Time = last.Add(time.Nanosecond)
	}
	return txn.Set(reflogKey(name, entry.Time), encodeReflogEntry(entry))
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

// Reflog returns a ref's reflog, oldest first.
func (d *DB) Reflog(name string) ([]ReflogEntry, error) {
	var out []ReflogEntry
	err := d.db.View(func(txn *badger.Txn) error {
		return iterateReflogs(txn, reflogPrefix(name), func(_ string, e ReflogEntry) { out = append(out, e) })
	})
	if err != nil {
		return nil, fmt.Errorf("read reflog of %s: %w", name, d.wrapErr(err))
	}
	return out, nil
}

// iterateReflogs calls fn for every reflog entry whose key starts with prefix.
func iterateReflogs(txn *badger.Txn, prefix []byte, fn func(name string, e ReflogEntry)) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: prefix})
	defer it.Close()
	for it.Seek(prefix); it.Valid(); it.Next() {
		key := it.Item().Key()
		raw, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		e, err := decodeReflogEntry(raw)
		if err != nil {
			return err
		}
		name := ""
		if i := bytes.IndexByte(key, 0); i > 0 {
			name = string(key[1:i])
		}
		fn(name, e)
	}
	return nil
}
