package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const reaperHelperEnv = "SPORE_AGENT_REAPER_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(reaperHelperEnv) != "" {
		if err := reaperHelper(); err != nil {
			fmt.Fprintf(os.Stderr, "reaper helper: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestReaperAllChildren runs a Reaper in AllChildren mode in a helper
// process that is a child subreaper, so orphans are re-parented to it as
// they are to PID 1 in the guest.
func TestReaperAllChildren(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), reaperHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "orphan reaped") {
		t.Errorf("helper output %q does not report the orphan", out)
	}
}

func reaperHelper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	orphans := make(chan int, 4)
	r := NewReaper(true, func(pid int, ws unix.WaitStatus) { orphans <- pid })

	// The shell exits at once and leaves a sleeping child behind.
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.2 & echo $! ; exit 5")
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout = pw
	done, err := r.Start(cmd)
	pw.Close()
	if err != nil {
		return err
	}
	var orphanPID int
	fmt.Fscan(pr, &orphanPID)

	select {
	case ws := <-done:
		if st := exitStatus(ws); st.Code != 5 {
			return fmt.Errorf("shell status %v, expected exit code 5", st)
		}
	case <-time.After(5 * time.Second):
		return fmt.Errorf("shell was not reaped")
	}
	select {
	case pid := <-orphans:
		if pid != orphanPID {
			return fmt.Errorf("reaped orphan %d, expected the sleep with PID %d", pid, orphanPID)
		}
		fmt.Println("orphan reaped")
	case <-time.After(5 * time.Second):
		return fmt.Errorf("orphan %d was not reaped", orphanPID)
	}
	// A zombie would still have a /proc entry.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", orphanPID)); err == nil {
		return fmt.Errorf("orphan %d still exists in /proc", orphanPID)
	}
	return serverWithReaperAll(r, orphans)
}

// serverWithReaperAll runs sessions through a Server whose Reaper collects
// every child, as under PID 1: exit statuses must still reach the sessions.
func serverWithReaperAll(r *Reaper, orphans <-chan int) error {
	hr, gw, err := os.Pipe()
	if err != nil {
		return err
	}
	gr, hw, err := os.Pipe()
	if err != nil {
		return err
	}
	srv := NewServer(ServerConfig{Reaper: r})
	go srv.Serve(context.Background(), gr, gw)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, hr, hw, ClientOptions{})
	if err != nil {
		return err
	}
	defer c.Close()

	for code := range 3 {
		var out strings.Builder
		st, err := c.Exec(ctx, Request{Shell: fmt.Sprintf("sleep 0.05 >/dev/null & echo hi; exit %d", code)}, nil, &out, nil)
		if err != nil {
			return fmt.Errorf("exec %d: %w", code, err)
		}
		if st.Code != code || out.String() != "hi\n" {
			return fmt.Errorf("exec %d: status %v, output %q", code, st, out.String())
		}
	}
	for i := range 3 {
		select {
		case <-orphans:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("orphan %d of 3 backgrounded sleeps was not reaped", i+1)
		}
	}
	return nil
}
