package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
)

// CLI is the command tree. Each command lives in its own file as a struct
// with a Run(*Globals) error method.
type CLI struct {
	Globals

	Version VersionCmd `cmd:"" help:"Print the spore version and whether this host can run arm64 guests."`
}

// Globals are the flags every command accepts.
type Globals struct {
	JSON  bool `help:"Print results and errors as JSON for scripts."`
	Debug bool `help:"Log debug details on stderr."`
}

// configureLogging sets the default slog logger: warnings only, or
// everything with --debug. Logs always go to stderr.
func (g *Globals) configureLogging() {
	level := slog.LevelWarn
	if g.Debug {
		level = slog.LevelDebug
	}
	handler := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	slog.SetDefault(slog.New(handler))
}

// writeJSON prints v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
