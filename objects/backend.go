package objects

import (
	"errors"
	"fmt"
	"time"
)

// Backend is the raw interface of a store: stored values by ID, refs with
// compare-and-swap, and collection. The badger database (DB) implements it,
// and so does the client of a store server (Client). Values passed through
// it are in stored form (codec byte, kind byte, payload); Store adds
// encoding, compression and verification on top.
//
// Implementations are safe for concurrent use.
type Backend interface {
	// Get returns the stored value of id, or an error wrapping ErrNotFound.
	Get(id ID) ([]byte, error)
	// Has reports for each ID whether the object is stored.
	Has(ids []ID) ([]bool, error)
	// Put stores objects. Objects that are already stored are skipped. It
	// returns an error wrapping ErrDiskFull when the disk cannot hold them.
	Put(objs []StoredObject) error
	// ListIDs returns up to limit stored IDs in ascending order that start
	// with hexPrefix and sort after after (use ZeroID to start).
	ListIDs(hexPrefix string, after ID, limit int) ([]ID, error)
	// GetRef returns the value of a ref and whether it exists.
	GetRef(name string) (RefValue, bool, error)
	// ListRefs returns every ref whose name starts with prefix, sorted.
	ListRefs(prefix string) ([]RefEntry, error)
	// UpdateRefs applies all updates atomically or none of them. A failed
	// expectation returns a *RefConflictError; a target that is not stored
	// returns an error wrapping ErrNotFound.
	UpdateRefs(updates []RefUpdate) error
	// Reflog returns the reflog of a ref, oldest entry first.
	Reflog(name string) ([]ReflogEntry, error)
	// GC deletes objects that no ref or reflog reaches.
	GC(opts GCOptions) (GCStats, error)
	// Close releases the backend.
	Close() error
}

// StoredObject is an object in stored form, keyed by its ID.
type StoredObject struct {
	ID    ID
	Value []byte
}

// Sentinel errors of the store.
var (
	// ErrNotFound is wrapped by errors about objects or refs that do not exist.
	ErrNotFound = errors.New("not found")
	// ErrDiskFull is wrapped by errors about writes that the disk cannot hold.
	ErrDiskFull = errors.New("disk full")
	// ErrClosed is returned by a backend after Close.
	ErrClosed = errors.New("store is closed")
)

// RefValue is the target of a ref: an object ID, or another ref's name for
// a symbolic ref such as HEAD. Exactly one of the fields is set.
type RefValue struct {
	ID       ID     `json:"id,omitempty"`
	Symbolic string `json:"symbolic,omitempty"`
}

// String returns the ID in hex or "ref: NAME" for a symbolic ref.
func (v RefValue) String() string {
	if v.Symbolic != "" {
		return "ref: " + v.Symbolic
	}
	return v.ID.String()
}

// Expect is the condition an update puts on a ref's current value.
type Expect byte

const (
	// ExpectAny applies the update whatever the current value is.
	ExpectAny Expect = 0
	// ExpectAbsent requires that the ref does not exist.
	ExpectAbsent Expect = 1
	// ExpectValue requires that the ref exists with the value Old.
	ExpectValue Expect = 2
)

// RefUpdate is one compare-and-swap update of a ref.
type RefUpdate struct {
	// Name is the full ref name. Backends do not validate it; the refs
	// package does.
	Name string
	// Expect and Old state the required current value.
	Expect Expect
	Old    RefValue
	// Delete removes the ref; otherwise New is its new value.
	Delete bool
	New    RefValue
	// Reason and Time go into the reflog entry.
	Reason string
	Time   time.Time
}

// RefEntry is one ref in a listing.
type RefEntry struct {
	Name  string   `json:"name"`
	Value RefValue `json:"value"`
}

// ReflogEntry records one change of a ref. Old or New is ZeroID when the
// ref was created or deleted, or when it was symbolic.
type ReflogEntry struct {
	Time   time.Time `json:"time"`
	Old    ID        `json:"old"`
	New    ID        `json:"new"`
	Reason string    `json:"reason"`
}

// RefConflictError is returned when a ref's current value does not match
// an update's expectation.
type RefConflictError struct {
	Name    string
	Exists  bool
	Current RefValue
	Expect  Expect
	Old     RefValue
}

func (e *RefConflictError) Error() string {
	cur := "does not exist"
	if e.Exists {
		cur = "is " + e.Current.String()
	}
	want := "to not exist"
	if e.Expect == ExpectValue {
		want = "to be " + e.Old.String()
	}
	return fmt.Sprintf("ref %s changed concurrently: expected it %s, but it %s; reread the ref and retry", e.Name, want, cur)
}

// GCOptions controls a collection.
type GCOptions struct {
	// Grace keeps objects that a client wrote or found present within this
	// duration before the collection, with everything they reach, because
	// a writer may be about to point a ref at them. Zero means
	// DefaultGCGrace. The server remembers these touches in memory: they
	// are lost when it restarts, and beyond a million of them those older
	// than DefaultGCGrace are forgotten.
	Grace time.Duration
	// DryRun counts what would be deleted and deletes nothing. Its object
	// counts do not take ExpireReflogs into account.
	DryRun bool
	// ExpireReflogs deletes reflog entries older than this before marking,
	// so that objects only they reach can be collected. Zero keeps every
	// entry.
	ExpireReflogs time.Duration
}

// DefaultGCGrace is the grace period of GC when GCOptions.Grace is zero.
const DefaultGCGrace = time.Hour

// GCStats reports what a collection did.
type GCStats struct {
	// Roots counts refs and reflog entries; Reachable the objects they
	// reach; KeptRecent the further objects kept for the grace period.
	Roots          int   `json:"roots"`
	Reachable      int   `json:"reachable"`
	KeptRecent     int   `json:"kept_recent"`
	Deleted        int   `json:"deleted"`
	DeletedBytes   int64 `json:"deleted_bytes"`
	MissingReached int   `json:"missing_reached"`
	// ExpiredReflogEntries counts the reflog entries deleted (or, with
	// DryRun, that would be deleted) by ExpireReflogs.
	ExpiredReflogEntries int `json:"expired_reflog_entries"`
}
