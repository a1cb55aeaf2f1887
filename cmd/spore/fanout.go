package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/vm"
	"github.com/spore-vm/spore/vm/guest"
)

// FanoutCmd resumes fork children side by side and runs a command in each.
type FanoutCmd struct {
	Parallel    int           `short:"p" placeholder:"K" help:"Run at most K children at once (default: all)."`
	For         time.Duration `placeholder:"DURATION" help:"Stop each child this long after its resume; a command still running counts as failed. Without a command, the children run for this long."`
	Env         []string      `short:"e" sep:"none" placeholder:"KEY=VALUE" help:"Set an environment variable for the command (repeatable)."`
	Workdir     string        `short:"w" placeholder:"DIR" help:"Working directory of the command in the guest."`
	ShareMemory bool          `default:"true" negatable:"" help:"Map the children's memory from one backing per commit, a file in /dev/shm/spore-UID that other spore processes resuming the commit share too, so pages no child wrote are held once (--no-share-memory gives each child its own copy)."`
	Events      string        `enum:"text,jsonl" default:"text" help:"Output form: text prefixes each line with the child's name; jsonl prints one JSON event per line on stdout (output, resumed, exit, and a final summary)."`
	Target      string        `arg:"" name:"REF|PREFIX" help:"A forked ref, whose fork children run, or a ref prefix ending in / (such as forks/base/), whose refs run."`
	Command     []string      `arg:"" optional:"" passthrough:"" help:"The command: after --, an argv run exactly; a single argument without --, a string run with /bin/sh -lc."`
}

// fanoutSummary is the last record of spore fanout: the --json summary on
// stderr, and the final jsonl event.
type fanoutSummary struct {
	Type      string               `json:"type"`
	Children  int                  `json:"children"`
	Failed    int                  `json:"failed"`
	ElapsedMS int64                `json:"elapsed_ms"`
	Results   []guest.FanoutResult `json:"results"`
}

func (c *FanoutCmd) Run(g *Globals) error {
	req := c.request()
	if req.Argv == nil && req.Shell == "" && c.For <= 0 {
		return withExitCode(ExitUsage, errors.New("no command given: give a command after the ref, or --for DURATION to run the children without one"))
	}
	for _, kv := range c.Env {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			return withExitCode(ExitUsage, fmt.Errorf("invalid --env %q: use KEY=VALUE", kv))
		}
	}
	if c.Parallel < 0 {
		return withExitCode(ExitUsage, fmt.Errorf("invalid --parallel %d: use 1 or more, or 0 for all", c.Parallel))
	}
	if c.For < 0 {
		return withExitCode(ExitUsage, fmt.Errorf("invalid --for %v: use a positive duration such as 30s", c.For))
	}

	store, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer store.Close()
	children, err := fanoutChildren(store, r, c.Target)
	if err != nil {
		return err
	}
	if probe := vm.ProbeHost(); !probe.Usable {
		return withExitCode(ExitRunHostUnsupported, fmt.Errorf("this host cannot run arm64 guests: %s", probe.Reason))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	out := newFanoutPrinter(c.Events, children)
	opts := guest.FanoutOptions{
		Request:  req,
		Parallel: c.Parallel,
		For:      c.For,
		Guest:    guest.Options{Logger: slog.Default(), ShareMemory: c.ShareMemory},
		Events:   out.event,
	}
	if c.ShareMemory {
		opts.Guest.SharedMemoryDir = sharedMemoryDir()
	}
	kernelLog, closeLog, err := g.kernelLog()
	if err != nil {
		return withExitCode(ExitUsage, err)
	}
	defer closeLog()
	opts.Guest.KernelLog = kernelLog
	start := time.Now()
	results, err := guest.Fanout(ctx, store, children, opts)
	if err != nil {
		return withExitCode(ExitUsage, err)
	}

	summary := fanoutSummary{Type: "summary", Children: len(results), ElapsedMS: time.Since(start).Milliseconds(), Results: results}
	for i := range results {
		if results[i].Failed() {
			summary.Failed++
		}
	}
	out.summary(summary)
	if g.JSON {
		writeJSON(os.Stderr, summary)
	}
	if summary.Failed > 0 {
		return withExitCode(ExitFailure, errSilent)
	}
	return nil
}

// sharedMemoryDir returns the directory of shared memory files, or "" when
// /dev/shm is not a tmpfs and guests fall back to a memfd.
func sharedMemoryDir() string {
	dir := vm.DefaultSharedMemoryDir()
	if dir == "" {
		slog.Debug("/dev/shm is not a tmpfs: guest memory is shared only between guests of this process, through a memfd")
	}
	return dir
}

func (c *FanoutCmd) request() agent.Request {
	req := agent.Request{Env: c.Env, Dir: c.Workdir}
	req.Argv, req.Shell = parseCommand(c.Command)
	return req
}

// fanoutChildren lists the commits a fan-out runs, by name.
func fanoutChildren(store *objects.Store, r *refs.Refs, target string) ([]guest.FanoutChild, error) {
	var prefix string
	direct := false
	if strings.HasSuffix(target, "/") {
		prefix = target
		if !strings.HasPrefix(prefix, "refs/") {
			prefix = "refs/" + prefix
		}
	} else {
		parent, name, err := resolveArgument(store, r, "fanout", target)
		if err != nil {
			return nil, err
		}
		prefix, direct = refs.ForkNamespace(name, parent), true
	}

	list, err := r.List(prefix)
	if err != nil {
		return nil, err
	}
	var children []guest.FanoutChild
	for _, ref := range list {
		rest := strings.TrimPrefix(ref.Name, prefix)
		if direct && strings.Contains(rest, "/") || ref.Target.IsZero() {
			continue
		}
		children = append(children, guest.FanoutChild{Name: strings.TrimPrefix(ref.Name, refs.ForksPrefix), Commit: ref.Target})
	}
	sort.Slice(children, func(i, j int) bool { return children[i].Name < children[j].Name })
	if len(children) == 0 {
		if direct {
			return nil, withExitCode(ExitUsage, fmt.Errorf("%s has no fork children (no refs under %s): run spore fork %s --count N first", target, prefix, target))
		}
		return nil, withExitCode(ExitUsage, fmt.Errorf("no refs under %s: spore refs lists the refs", prefix))
	}
	return children, nil
}

// fanoutPrinter writes fan-out events as prefixed text or as JSON lines.
type fanoutPrinter struct {
	jsonl  bool
	width  int
	stdout io.Writer
	stderr io.Writer
}

func newFanoutPrinter(form string, children []guest.FanoutChild) *fanoutPrinter {
	p := &fanoutPrinter{jsonl: form == "jsonl", stdout: os.Stdout, stderr: os.Stderr}
	for _, c := range children {
		p.width = max(p.width, len(c.Name))
	}
	return p
}

// jsonEvent is one line of --events=jsonl.
type jsonEvent struct {
	guest.FanoutEvent
	ElapsedMS int64 `json:"elapsed_ms"`
	// Line is the output line when it is valid UTF-8, LineBase64 otherwise.
	Line       *string `json:"line,omitempty"`
	LineBase64 string  `json:"line_base64,omitempty"`
}

func (p *fanoutPrinter) event(e guest.FanoutEvent) {
	if p.jsonl {
		je := jsonEvent{FanoutEvent: e, ElapsedMS: e.Elapsed.Milliseconds()}
		if e.Type == guest.EventOutput {
			if utf8.Valid(e.Line) {
				line := string(e.Line)
				je.Line = &line
			} else {
				je.LineBase64 = base64.StdEncoding.EncodeToString(e.Line)
			}
		}
		data, _ := json.Marshal(je)
		p.stdout.Write(append(data, '\n'))
		return
	}

	switch e.Type {
	case guest.EventOutput:
		w := p.stdout
		if e.Stream == "stderr" {
			w = p.stderr
		}
		fmt.Fprintf(w, "%-*s | %s\n", p.width, e.Child, e.Line)
	case guest.EventExit:
		fmt.Fprintf(p.stderr, "spore: %-*s %s\n", p.width, e.Child, describeResult(e.Result))
	}
}

func (p *fanoutPrinter) summary(s fanoutSummary) {
	if p.jsonl {
		data, _ := json.Marshal(s)
		p.stdout.Write(append(data, '\n'))
		return
	}
	fmt.Fprintf(p.stderr, "spore: %d children, %d failed, in %v\n", s.Children, s.Failed,
		(time.Duration(s.ElapsedMS) * time.Millisecond).Round(time.Millisecond))
}

// describeResult returns a child's end state in a few words.
func describeResult(r *guest.FanoutResult) string {
	switch {
	case r.TimedOut:
		return "timed out: " + r.Error
	case r.Error != "":
		return "failed: " + r.Error
	case r.Signal != 0:
		return fmt.Sprintf("killed by signal %d", r.Signal)
	default:
		return fmt.Sprintf("exited %d", r.ExitCode)
	}
}
