package agent

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// Reaper waits for child processes on SIGCHLD and delivers each registered
// child's wait status. In AllChildren mode it also reaps every other child,
// which PID 1 must do for orphans that the kernel re-parents to it.
//
// Children started through a Reaper must not be waited for elsewhere
// (no exec.Cmd.Wait, no os.Process.Wait).
type Reaper struct {
	mu      sync.Mutex // held while starting a child, so it is registered before it can be reaped
	waiting map[int]chan unix.WaitStatus
	all     bool
	orphan  func(pid int, ws unix.WaitStatus)
	sigs    chan os.Signal
}

// NewReaper starts a Reaper. With all set it reaps every child of the
// process and calls orphan (which may be nil) for those it did not start.
// Without it, it only waits for the children it started, so other code in
// the process may keep using exec.Cmd.Wait.
func NewReaper(all bool, orphan func(pid int, ws unix.WaitStatus)) *Reaper {
	r := &Reaper{
		waiting: make(map[int]chan unix.WaitStatus),
		all:     all,
		orphan:  orphan,
		sigs:    make(chan os.Signal, 1),
	}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	return r
}

// Start starts cmd and registers its PID. The returned channel receives
// the wait status once. cmd's Stdin, Stdout and Stderr must be nil or
// *os.File, because cmd.Wait never runs and so would not copy between
// other readers or writers and the process.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan unix.WaitStatus, error) {
	for _, f := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		switch f.(type) {
		case nil, *os.File:
		default:
			return nil, fmt.Errorf("reaper: %s: stdio must be nil or *os.File, got %T", cmd.Path, f)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiting[cmd.Process.Pid] = ch
	return ch, nil
}

func (r *Reaper) loop() {
	for range r.sigs {
		r.reap()
	}
}

// reap collects every child that has exited. SIGCHLD signals coalesce, so
// one signal may stand for several children.
func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()

	if !r.all {
		for pid, ch := range r.waiting {
			var ws unix.WaitStatus
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if err == nil && got == pid && (ws.Exited() || ws.Signaled()) {
				delete(r.waiting, pid)
				ch <- ws
			}
		}
		return
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if !ws.Exited() && !ws.Signaled() {
			continue
		}
		if ch, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			ch <- ws
		} else if r.orphan != nil {
			r.orphan(pid, ws)
		}
	}
}

// exitStatus converts a wait status to the protocol's ExitStatus.
func exitStatus(ws unix.WaitStatus) ExitStatus {
	if ws.Signaled() {
		sig := int(ws.Signal())
		return ExitStatus{Code: 128 + sig, Signal: sig}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

// Run starts cmd through the Reaper and waits for it, like exec.Cmd.Run.
// It returns an error for a non-zero exit or a signal death.
func (r *Reaper) Run(cmd *exec.Cmd) error {
	wait, err := r.StartWait(cmd)
	if err != nil {
		return err
	}
	return wait()
}

// StartWait starts cmd like Start and returns a function that waits for
// it, like exec.Cmd.Wait. The wait function returns an error for a
// non-zero exit or a signal death, and must be called once.
func (r *Reaper) StartWait(cmd *exec.Cmd) (wait func() error, err error) {
	done, err := r.Start(cmd)
	if err != nil {
		return nil, err
	}
	return func() error {
		ws := <-done
		cmd.Process.Release()
		if st := exitStatus(ws); st.Code != 0 {
			return fmt.Errorf("%s: %s", cmd.Path, st)
		}
		return nil
	}, nil
}
