package main

import (
	"errors"
	"fmt"
	"os"
)

// Exit codes of spore's own failures. A command run in a guest passes its
// own status through, so these stay few and documented in docs/cli.md.
const (
	ExitSuccess = 0
	// ExitFailure is any failure that has no more specific code.
	ExitFailure = 1
	// ExitUsage is an unknown command, an unknown flag or an invalid value.
	ExitUsage = 2
)

// exitError attaches an exit code to an error returned by a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExitCode wraps err so that spore exits with code when err is returned.
func withExitCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// errSilent ends a command with a non-zero exit code and no message, for a
// guest command whose own exit status spore passes through.
var errSilent = errors.New("exit status passed through")

// reportError prints err on stderr, as JSON with --json, and returns the exit
// code that belongs to it.
func reportError(g *Globals, err error) int {
	code := ExitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}

	if errors.Is(err, errSilent) {
		return code
	}
	if g.JSON {
		writeJSON(os.Stderr, map[string]any{"error": err.Error(), "exit_code": code})
	} else {
		fmt.Fprintf(os.Stderr, "spore: %v\n", err)
	}
	return code
}
