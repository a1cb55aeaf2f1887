package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// CLI is the command tree. Each command lives in its own file as a struct
// with a Run(*Globals) error method. Commands of one area (fork and
// fan-out, transport, root file systems) are grouped in a struct of their
// own that kong embeds, so the groups are edited apart.
type CLI struct {
	Globals

	ForkCommands      `embed:""`
	TransportCommands `embed:""`
	RootfsCommands    `embed:""`

	Version     VersionCmd `cmd:"" help:"Print the spore version and whether this host can run arm64 guests."`
	Run         RunCmd     `cmd:"" help:"Boot a guest, run one command in it and power it off."`
	Log         LogCmd     `cmd:"" help:"Show the history of a commit, or the fork tree with --graph."`
	Show        ShowCmd    `cmd:"" help:"Print any object (commit, tree, chunk index, chunk) in readable form."`
	Refs        RefsCmd    `cmd:"" help:"List refs and the objects they point to."`
	Tag         TagCmd     `cmd:"" help:"Create, delete or list tags."`
	Fsck        FsckCmd    `cmd:"" help:"Verify every object that a ref or reflog reaches."`
	GC          GCCmd      `cmd:"" name:"gc" help:"Delete objects that no ref or reflog reaches."`
	StoreServer StoreCmd   `cmd:"" name:"store" hidden:"" help:"Store maintenance commands."`
}

// Globals are the flags every command accepts.
type Globals struct {
	JSON  bool   `help:"Print results and errors as JSON for scripts."`
	Debug bool   `help:"Log debug details on stderr."`
	Store string `help:"Store directory (default $XDG_DATA_HOME/spore, or ~/.local/share/spore)." env:"SPORE_STORE" placeholder:"DIR"`
	// ConsoleLog keeps the guest kernel's messages, which spore otherwise
	// shows only with --debug, for a guest that crashed or hung.
	ConsoleLog string `name:"console-log" help:"Append the console output of every guest this command starts (kernel messages, init) to FILE." env:"SPORE_CONSOLE_LOG" placeholder:"FILE"`
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

// kernelLog returns where guest console output goes: the --console-log
// file, stderr with --debug, both, or nil for nowhere. closeLog closes the
// file.
func (g *Globals) kernelLog() (w io.Writer, closeLog func(), err error) {
	var writers []io.Writer
	closeLog = func() {}
	if g.ConsoleLog != "" {
		f, err := os.OpenFile(g.ConsoleLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("--console-log %s: %w; give a file in a writable directory", g.ConsoleLog, err)
		}
		writers = append(writers, f)
		closeLog = func() { f.Close() }
	}
	if g.Debug {
		writers = append(writers, os.Stderr)
	}
	switch len(writers) {
	case 0:
		return nil, closeLog, nil
	case 1:
		return writers[0], closeLog, nil
	}
	return io.MultiWriter(writers...), closeLog, nil
}

// writeJSON prints v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
