package refs

import (
	"errors"
	"fmt"
	"time"

	"github.com/spore-vm/spore/objects"
)

// Refs reads and updates the refs of a store.
type Refs struct {
	b objects.Backend
}

// New returns the refs of a store backend.
func New(b objects.Backend) *Refs { return &Refs{b: b} }

// Ref is a ref with its value.
type Ref struct {
	Name  string           `json:"name"`
	Value objects.RefValue `json:"value"`
	// Target is the object the ref resolves to after following symbolic
	// refs; ZeroID when a symbolic ref points to a missing ref.
	Target objects.ID `json:"target"`
}

// maxSymbolicDepth bounds chains of symbolic refs.
const maxSymbolicDepth = 5

// Get returns a ref's stored value and whether it exists.
func (r *Refs) Get(name string) (objects.RefValue, bool, error) {
	if err := ValidateName(name); err != nil {
		return objects.RefValue{}, false, err
	}
	return r.b.GetRef(name)
}

// Resolve follows symbolic refs from name and returns the object it names.
// A ref that does not exist returns an error wrapping objects.ErrNotFound.
func (r *Refs) Resolve(name string) (objects.ID, error) {
	final, err := r.follow(name)
	if err != nil {
		return objects.ZeroID, err
	}
	v, ok, err := r.b.GetRef(final)
	if err != nil {
		return objects.ZeroID, err
	}
	if !ok {
		if final != name {
			return objects.ZeroID, fmt.Errorf("ref %s points to %s, which does not exist: %w", name, final, objects.ErrNotFound)
		}
		return objects.ZeroID, fmt.Errorf("ref %s: %w", name, objects.ErrNotFound)
	}
	return v.ID, nil
}

// follow returns the name of the ref that holds an ID after following
// symbolic refs from name.
func (r *Refs) follow(name string) (string, error) {
	for depth := 0; depth <= maxSymbolicDepth; depth++ {
		if err := ValidateName(name); err != nil {
			return "", err
		}
		v, ok, err := r.b.GetRef(name)
		if err != nil {
			return "", err
		}
		if !ok || v.Symbolic == "" {
			return name, nil
		}
		name = v.Symbolic
	}
	return "", fmt.Errorf("ref %s: symbolic refs nest deeper than %d", name, maxSymbolicDepth)
}

// Update is one change in a call to Apply.
type Update struct {
	// Name is the full ref name; a symbolic ref updates its target.
	Name string
	// Old is the value the ref must have now; ZeroID means it must not
	// exist. Ignored when Force is set.
	Old objects.ID
	// New is the new value; ZeroID deletes the ref.
	New objects.ID
	// Force applies the update whatever the current value is.
	Force bool
	// Reason is recorded in the reflog, such as "capture" or "tag".
	Reason string
}

// Apply performs updates atomically: all of them or, when one expectation
// fails (*objects.RefConflictError) or a new target object is not stored
// (objects.ErrNotFound), none.
func (r *Refs) Apply(updates ...Update) error {
	now := time.Now()
	raw := make([]objects.RefUpdate, 0, len(updates))
	for _, u := range updates {
		name, err := r.follow(u.Name)
		if err != nil {
			return err
		}
		ru := objects.RefUpdate{Name: name, Reason: u.Reason, Time: now}
		switch {
		case u.Force:
			ru.Expect = objects.ExpectAny
		case u.Old.IsZero():
			ru.Expect = objects.ExpectAbsent
		default:
			ru.Expect, ru.Old = objects.ExpectValue, objects.RefValue{ID: u.Old}
		}
		if u.New.IsZero() {
			ru.Delete = true
		} else {
			ru.New = objects.RefValue{ID: u.New}
		}
		raw = append(raw, ru)
	}
	return r.b.UpdateRefs(raw)
}

// Set points name at id with compare-and-swap against old (ZeroID: the ref
// must not exist).
func (r *Refs) Set(name string, old, id objects.ID, reason string) error {
	return r.Apply(Update{Name: name, Old: old, New: id, Reason: reason})
}

// Delete removes a ref if it still has the value old.
func (r *Refs) Delete(name string, old objects.ID, reason string) error {
	if old.IsZero() {
		return fmt.Errorf("delete ref %s: the expected old value is required", name)
	}
	return r.Apply(Update{Name: name, Old: old, Reason: reason})
}

// SetSymbolic makes name (usually HEAD) a symbolic ref to target.
func (r *Refs) SetSymbolic(name, target, reason string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateName(target); err != nil {
		return err
	}
	if target == name {
		return fmt.Errorf("symbolic ref %s cannot point to itself", name)
	}
	return r.b.UpdateRefs([]objects.RefUpdate{{
		Name: name, Expect: objects.ExpectAny, New: objects.RefValue{Symbolic: target},
		Reason: reason, Time: time.Now(),
	}})
}

// List returns refs whose names start with prefix ("" lists all), with
// their targets.
func (r *Refs) List(prefix string) ([]Ref, error) {
	entries, err := r.b.ListRefs(prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Ref, 0, len(entries))
	for _, e := range entries {
		ref := Ref{Name: e.Name, Value: e.Value, Target: e.Value.ID}
		if e.Value.Symbolic != "" {
			id, err := r.Resolve(e.Name)
			if err != nil && !errors.Is(err, objects.ErrNotFound) {
				return nil, err
			}
			ref.Target = id
		}
		out = append(out, ref)
	}
	return out, nil
}

// Reflog returns the reflog of a ref, oldest first.
func (r *Refs) Reflog(name string) ([]objects.ReflogEntry, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	return r.b.Reflog(name)
}
