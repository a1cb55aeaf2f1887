package refs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spore-vm/spore/objects"
)

// candidates returns the full ref names that a revision may mean, in the
// order git tries them.
func candidates(spec string) []string {
	if spec == Head || strings.HasPrefix(spec, "refs/") {
		return []string{spec}
	}
	return []string{"refs/" + spec, HeadsPrefix + spec, TagsPrefix + spec, ForksPrefix + spec}
}

// Expand returns the full name of the one existing ref that a short name
// means. It fails with objects.ErrNotFound when none exists and with
// objects.ErrAmbiguous, listing them, when several do.
func (r *Refs) Expand(spec string) (string, error) {
	if spec == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if err := checkFormat(spec); err != nil && spec != Head {
		return "", err
	}
	var found []string
	for _, name := range candidates(spec) {
		if ValidateName(name) != nil {
			continue
		}
		_, ok, err := r.b.GetRef(name)
		if err != nil {
			return "", err
		}
		if ok {
			found = append(found, name)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no ref named %s (tried %s): %w", spec, strings.Join(candidates(spec), ", "), objects.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("ref name %s is %w: it matches %s; give the full name", spec, objects.ErrAmbiguous, strings.Join(found, ", "))
}

// Revision resolves what a user typed to an object: a ref name (full or
// short, see Expand) or an object ID of at least objects.MinPrefixLen hex
// digits. A ref wins over an ID prefix with the same spelling. The second
// result names how the revision was found, such as "refs/heads/main".
func Revision(s *objects.Store, r *Refs, spec string) (objects.ID, string, error) {
	name, err := r.Expand(spec)
	switch {
	case err == nil:
		id, err := r.Resolve(name)
		return id, name, err
	case errors.Is(err, objects.ErrAmbiguous):
		return objects.ZeroID, "", err
	case !errors.Is(err, objects.ErrNotFound) && !objects.IsHexPrefix(spec):
		return objects.ZeroID, "", err
	}
	if objects.IsHexPrefix(spec) {
		id, perr := s.ResolvePrefix(spec)
		if perr == nil || errors.Is(perr, objects.ErrAmbiguous) {
			return id, id.String(), perr
		}
	}
	if spec == Head {
		return objects.ZeroID, "", fmt.Errorf("HEAD does not exist: this store has no current commit yet; name a ref or a commit ID: %w", objects.ErrNotFound)
	}
	return objects.ZeroID, "", fmt.Errorf("unknown revision %q: it is neither a ref (tried %s) nor the start of a stored object ID: %w",
		spec, strings.Join(candidates(spec), ", "), objects.ErrNotFound)
}
