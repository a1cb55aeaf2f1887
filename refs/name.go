// Package refs names commits: git-style ref names under refs/heads,
// refs/tags and refs/forks, a symbolic HEAD, compare-and-swap updates that
// only succeed when the target object is stored, and a reflog of every
// change. Refs live in the same database as the objects (see package
// objects), so a ref update and the objects it points to share one store.
package refs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spore-vm/spore/objects"
)

// Namespaces of refs.
const (
	// Head is the symbolic ref that names the current branch.
	Head = "HEAD"
	// HeadsPrefix is the namespace of branches.
	HeadsPrefix = "refs/heads/"
	// TagsPrefix is the namespace of tags.
	TagsPrefix = "refs/tags/"
	// ForksPrefix is the namespace of fork children: a fork of N children
	// from refs/heads/NAME writes refs/forks/NAME/000000 and on.
	ForksPrefix = "refs/forks/"
)

// MaxNameLen bounds the length of a ref name in bytes.
const MaxNameLen = 1024

// ErrInvalidName is wrapped by errors about ref names that break the rules.
var ErrInvalidName = errors.New("invalid ref name")

// ValidateName checks a full ref name with the rules of git
// check-ref-format. A name is HEAD, or refs/ followed by slash-separated
// components that are not empty and neither start with "." nor end with
// ".lock". It contains no "..", "@{", control characters, space,
// ~ ^ : ? * [ or backslash, and does not end with "/" or ".".
func ValidateName(name string) error {
	if name == Head {
		return nil
	}
	if !strings.HasPrefix(name, "refs/") {
		return fmt.Errorf("%w %q: full ref names are HEAD or start with refs/ (for example refs/heads/%s)", ErrInvalidName, name, name)
	}
	return checkFormat(name)
}

// checkFormat applies the component rules to a name.
func checkFormat(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidName, name, why) }
	if name == "" {
		return bad("empty")
	}
	if len(name) > MaxNameLen {
		return bad(fmt.Sprintf("longer than %d bytes", MaxNameLen))
	}
	if name == "@" {
		return bad(`"@" alone is not allowed`)
	}
	for _, c := range []byte(name) {
		if c < 0x20 || c == 0x7f {
			return bad(fmt.Sprintf("contains control character 0x%02x", c))
		}
		if strings.IndexByte(" ~^:?*[\\", c) >= 0 {
			return bad(fmt.Sprintf("contains %q", c))
		}
	}
	if strings.Contains(name, "..") {
		return bad(`contains ".."`)
	}
	if strings.Contains(name, "@{") {
		return bad(`contains "@{"`)
	}
	if strings.HasSuffix(name, "/") || strings.HasSuffix(name, ".") {
		return bad(`ends with "/" or "."`)
	}
	for _, part := range strings.Split(name, "/") {
		switch {
		case part == "":
			return bad("has an empty path component")
		case strings.HasPrefix(part, "."):
			return bad(fmt.Sprintf("component %q starts with \".\"", part))
		case strings.HasSuffix(part, ".lock"):
			return bad(fmt.Sprintf("component %q ends with \".lock\"", part))
		}
	}
	return nil
}

// ValidateShortName checks a name given without its namespace, such as a
// branch or tag name ("main", "v1/warm").
func ValidateShortName(name string) error {
	if strings.HasPrefix(name, "refs/") || name == Head {
		return fmt.Errorf("%w %q: give the name without refs/ or HEAD", ErrInvalidName, name)
	}
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("%w %q: starts with \"-\"", ErrInvalidName, name)
	}
	return checkFormat(name)
}

// ShortName returns name without its refs/heads/, refs/tags/ or refs/
// prefix, for display.
func ShortName(name string) string {
	for _, p := range []string{HeadsPrefix, TagsPrefix, "refs/"} {
		if strings.HasPrefix(name, p) {
			return strings.TrimPrefix(name, p)
		}
	}
	return name
}

// ForkNamespace returns the ref prefix of the fork children of a commit:
// refs/forks/NAME/, where NAME is the short name of ref without forks/
// (refs/heads/base gives refs/forks/base/, refs/forks/base/000003 gives
// refs/forks/base/000003/). A commit named by its ID (ref empty or not
// starting with refs/) uses the ID's short form.
func ForkNamespace(ref string, id objects.ID) string {
	name := id.Short()
	if strings.HasPrefix(ref, "refs/") {
		name = strings.TrimPrefix(ShortName(ref), "forks/")
	}
	return ForksPrefix + name + "/"
}
