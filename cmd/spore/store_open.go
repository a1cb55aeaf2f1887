package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
)

// storeDir returns the store directory: --store or SPORE_STORE, else
// $XDG_DATA_HOME/spore, else ~/.local/share/spore.
func (g *Globals) storeDir() (string, error) {
	if g.Store != "" {
		return g.Store, nil
	}
	if xdg := os.Getenv("XDG_DATA_HOME"); xdg != "" && filepath.IsAbs(xdg) {
		return filepath.Join(xdg, "spore"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", withExitCode(ExitUsage, fmt.Errorf("no store directory: set --store or SPORE_STORE (%v)", err))
	}
	return filepath.Join(home, ".local", "share", "spore"), nil
}

// openStore opens the store through its server, which it starts on demand
// by running this binary as `spore store serve`.
func (g *Globals) openStore() (*objects.Store, *refs.Refs, error) {
	dir, err := g.storeDir()
	if err != nil {
		return nil, nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find the spore binary to start the store server: %w", err)
	}
	s, err := objects.Open(dir, objects.Options{
		ServerCommand: []string{exe, "store", "serve"},
		Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "spore: "+format+"\n", args...)
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return s, refs.New(s.Backend()), nil
}

// revisionError gives bad revisions the usage exit code.
func revisionError(err error) error {
	if errors.Is(err, refs.ErrInvalidName) || errors.Is(err, objects.ErrInvalidID) || errors.Is(err, objects.ErrAmbiguous) {
		return withExitCode(ExitUsage, err)
	}
	return err
}

// resolveRevision resolves what the user typed to an object ID.
func resolveRevision(s *objects.Store, r *refs.Refs, spec string) (objects.ID, error) {
	id, _, err := refs.Revision(s, r, spec)
	if err != nil {
		return id, revisionError(err)
	}
	return id, nil
}

// resolveArgument resolves the revision argument of a command, such as
// fork's REF. An unknown revision is a usage error, and the second result
// is the full ref name, or "" for a commit given by ID.
func resolveArgument(s *objects.Store, r *refs.Refs, command, spec string) (objects.ID, string, error) {
	id, name, err := refs.Revision(s, r, spec)
	if errors.Is(err, objects.ErrNotFound) {
		return id, "", withExitCode(ExitUsage, fmt.Errorf("%s %s: %w (spore refs lists the refs)", command, spec, err))
	}
	if err != nil {
		return id, "", revisionError(err)
	}
	if !strings.HasPrefix(name, "refs/") {
		name = ""
	}
	return id, name, nil
}

// refNamesByTarget maps object IDs to the refs that resolve to them.
func refNamesByTarget(r *refs.Refs) (map[objects.ID][]string, error) {
	list, err := r.List("")
	if err != nil {
		return nil, err
	}
	out := make(map[objects.ID][]string)
	for _, ref := range list {
		if !ref.Target.IsZero() {
			out[ref.Target] = append(out[ref.Target], ref.Name)
		}
	}
	return out, nil
}
