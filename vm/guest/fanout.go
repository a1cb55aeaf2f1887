package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/vm"
)

// FanoutChild is one commit that Fanout resumes.
type FanoutChild struct {
	// Name labels the child's output and events, such as "base/000003".
	Name   string
	Commit objects.ID
}

// FanoutOptions describe a fan-out.
type FanoutOptions struct {
	// Request is the command each child runs. A request without Argv and
	// Shell runs nothing: the children run for For and are stopped.
	Request agent.Request
	// Parallel bounds how many children run at once; 0 runs all at once.
	Parallel int
	// For bounds how long each child runs after its resume: a command still
	// running then is stopped and reported as timed out. 0 means no bound,
	// which needs a command.
	For time.Duration
	// Guest holds the options every child resumes with.
	Guest Options
	// Events receives the progress of every child, one call at a time.
	Events func(FanoutEvent)
}

// Fan-out event types.
const (
	EventResumed = "resumed" // a child's guest runs and has its identity
	EventOutput  = "output"  // one line of a child's stdout or stderr
	EventExit    = "exit"    // a child finished; Result holds its status
)

// FanoutEvent is one step of one child.
type FanoutEvent struct {
	Type  string `json:"type"`
	Child string `json:"child"`
	// Elapsed is the time since the fan-out started.
	Elapsed time.Duration `json:"-"`
	// Stream is "stdout" or "stderr" and Line one line of it, without its
	// line break, for output events.
	Stream string `json:"stream,omitempty"`
	Line   []byte `json:"-"`
	// Result is set on exit events.
	Result *FanoutResult `json:"result,omitempty"`
}

// FanoutResult is the end state of one child.
type FanoutResult struct {
	Child  string     `json:"child"`
	Commit objects.ID `json:"commit"`
	// ExitCode and Signal are the command's exit status.
	ExitCode int `json:"exit_code"`
	Signal   int `json:"signal,omitempty"`
	// TimedOut is true when For expired before the command exited.
	TimedOut bool `json:"timed_out,omitempty"`
	// Error is the reason the child failed to resume or to run its command.
	Error string `json:"error,omitempty"`
	// ResumeMS is the time from the start of the child's resume until its
	// agent applied the identity, FirstOutputMS the time since the fan-out
	// started until the child's first output line (0 without output), and
	// RunMS the child's whole run.
	ResumeMS      int64 `json:"resume_ms"`
	FirstOutputMS int64 `json:"first_output_ms,omitempty"`
	RunMS         int64 `json:"run_ms"`
	// ChunksPaged counts the memory chunks this child paged in from the
	// store; with a shared backing the children page in together, and
	// SharedMemory is true.
	ChunksPaged  uint64 `json:"chunks_paged"`
	SharedMemory bool   `json:"shared_memory,omitempty"`
	// Memory is the host memory the child's RAM used just before it was
	// stopped; its PSS counts shared pages in proportion.
	Memory *vm.MemoryUsage `json:"memory,omitempty"`
}

// Failed reports whether the child did not run its command to exit 0.
func (r *FanoutResult) Failed() bool {
	return r.Error != "" || r.TimedOut || r.ExitCode != 0
}

// Fanout resumes children concurrently from store, runs the request in
// each and stops them. One failing child does not stop the others; every
// child gets a result, in the order of children. Fanout returns an error
// only for options that no child could run with.
func Fanout(ctx context.Context, store *objects.Store, children []FanoutChild, opts FanoutOptions) ([]FanoutResult, error) {
	hasCommand := opts.Request.Argv != nil || opts.Request.Shell != ""
	if !hasCommand && opts.For <= 0 {
		return nil, errors.New("fan-out without a command needs a duration to run the children for")
	}
	if len(children) == 0 {
		return nil, errors.New("fan-out of no children")
	}
	parallel := opts.Parallel
	if parallel <= 0 || parallel > len(children) {
		parallel = len(children)
	}

	f := &fanout{store: store, opts: opts, start: time.Now(), hasCommand: hasCommand}
	results := make([]FanoutResult, len(children))
	slots := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, child := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				results[i] = FanoutResult{Child: child.Name, Commit: child.Commit, Error: "not started: " + ctx.Err().Error()}
				f.emit(FanoutEvent{Type: EventExit, Child: child.Name, Result: &results[i]})
				return
			}
			defer func() { <-slots }()
			results[i] = f.run(ctx, child)
			f.emit(FanoutEvent{Type: EventExit, Child: child.Name, Result: &results[i]})
		}()
	}
	wg.Wait()
	return results, nil
}

// fanout is the shared state of one Fanout call.
type fanout struct {
	store      *objects.Store
	opts       FanoutOptions
	start      time.Time
	hasCommand bool
	mu         sync.Mutex // serializes Events calls
	consoleMu  sync.Mutex // serializes writes to Guest.KernelLog
}

func (f *fanout) emit(e FanoutEvent) {
	if f.opts.Events == nil {
		return
	}
	e.Elapsed = time.Since(f.start)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opts.Events(e)
}

// run resumes one child, runs the command and stops the child.
func (f *fanout) run(ctx context.Context, child FanoutChild) FanoutResult {
	result := FanoutResult{Child: child.Name, Commit: child.Commit}
	started := time.Now()
	opts := f.opts.Guest
	if opts.Logger != nil {
		opts.Logger = opts.Logger.With("child", child.Name)
	}
	if opts.KernelLog != nil {
		console := f.kernelLog(child.Name)
		defer console.Flush()
		opts.KernelLog = console
	}
	g, err := Resume(ctx, f.store, child.Commit, child.Name, opts)
	if err != nil {
		result.Error = err.Error()
		result.RunMS = time.Since(started).Milliseconds()
		return result
	}
	defer g.Kill()
	result.ResumeMS = time.Since(started).Milliseconds()
	f.emit(FanoutEvent{Type: EventResumed, Child: child.Name})

	if f.opts.For > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.opts.For)
		defer cancel()
	}
	if !f.hasCommand {
		<-ctx.Done()
	} else {
		f.exec(ctx, g, child, &result)
	}
	if _, shared := g.SharedMemoryStats(); shared {
		result.SharedMemory = true
	} else {
		result.ChunksPaged = g.PagerStats().ChunksCopied
	}
	if usage, err := g.MemoryUsage(); err == nil {
		result.Memory = &usage
	}
	result.RunMS = time.Since(started).Milliseconds()
	return result
}

// kernelLog returns a writer that passes a child's console output to the
// shared KernelLog line by line, each line prefixed with the child's name
// so that the consoles of children running side by side stay apart.
func (f *fanout) kernelLog(child string) *lineWriter {
	return &lineWriter{emit: func(line []byte) {
		f.consoleMu.Lock()
		defer f.consoleMu.Unlock()
		fmt.Fprintf(f.opts.Guest.KernelLog, "%s: %s\n", child, line)
	}}
}

// exec runs the request in a resumed child and records its status.
func (f *fanout) exec(ctx context.Context, g *Guest, child FanoutChild, result *FanoutResult) {
	var firstOutput sync.Once
	stream := func(name string) *lineWriter {
		return &lineWriter{emit: func(line []byte) {
			firstOutput.Do(func() { result.FirstOutputMS = time.Since(f.start).Milliseconds() })
			f.emit(FanoutEvent{Type: EventOutput, Child: child.Name, Stream: name, Line: line})
		}}
	}
	stdout, stderr := stream("stdout"), stream("stderr")
	status, err := g.Exec(ctx, f.opts.Request, nil, stdout, stderr)
	stdout.Flush()
	stderr.Flush()

	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		result.TimedOut = true
		result.Error = fmt.Sprintf("still running after %v; stopped", f.opts.For)
	case err != nil:
		result.Error = err.Error()
	default:
		result.ExitCode, result.Signal = status.Code, status.Signal
	}
}

// lineWriter splits a stream into lines and hands each to emit; Flush
// hands over a last line without a line break.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(line []byte)
}

// maxLine bounds a line: a longer one is emitted in parts, so a child that
// writes no line breaks cannot grow the buffer without bound.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(bytes.Clone(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	for len(w.buf) >= maxLine {
		w.emit(bytes.Clone(w.buf[:maxLine]))
		w.buf = w.buf[maxLine:]
	}
	return len(p), nil
}

// Flush emits the rest of the stream as a last line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(bytes.Clone(w.buf))
		w.buf = nil
	}
}
