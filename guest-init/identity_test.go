package guestinit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spore-vm/spore/guest-init/agent"
)

// testIdentity returns an Identity whose kernel steps record their calls
// into steps, with RunDir and HookDir in a temp dir.
func testIdentity(t *testing.T, steps *[]string) *Identity {
	dir := t.TempDir()
	return &Identity{
		RunDir:  filepath.Join(dir, "run"),
		HookDir: filepath.Join(dir, "hooks.d"),
		Reseed: func(seed []byte) error {
			*steps = append(*steps, "reseed:"+string(seed))
			return nil
		},
		SetClock: func(tm time.Time) error {
			*steps = append(*steps, "clock:"+tm.UTC().Format(time.RFC3339))
			return nil
		},
		SetHostname: func(name string) error {
			*steps = append(*steps, "hostname:"+name)
			return nil
		},
	}
}

func writeHook(t *testing.T, dir, name, script string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityApply(t *testing.T) {
	var steps []string
	id := testIdentity(t, &steps)
	log := filepath.Join(t.TempDir(), "hooks.log")
	// Hooks run in name order and see the files written before them.
	writeHook(t, id.HookDir, "20-second", `echo "second $SPORE_GENERATION_ID $ROLE" >> `+log+"\n")
	writeHook(t, id.HookDir, "10-first", `grep -q '"generation": "gen-7"' "$SPORE_RUN_DIR/generation.json" && echo first >> `+log+"\n")
	os.WriteFile(filepath.Join(id.HookDir, "30-not-executable"), []byte("#!/bin/sh\nexit 1\n"), 0o644)

	m := &agent.SetIdentity{Generation: "gen-7", TimeUnixNs: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano(),
		Hostname: "child-7", Entropy: []byte("seed"), Env: []string{"ROLE=worker"}}
	if err := id.Apply(context.Background(), m); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := []string{"reseed:seed", "clock:2030-01-02T03:04:05Z", "hostname:child-7"}
	if strings.Join(steps, ",") != strings.Join(want, ",") {
		t.Errorf("kernel steps = %v, expected %v", steps, want)
	}

	var gen Generation
	b, err := os.ReadFile(filepath.Join(id.RunDir, "generation.json"))
	if err != nil || json.Unmarshal(b, &gen) != nil {
		t.Fatalf("generation.json unreadable: %v: %s", err, b)
	}
	if gen.Generation != "gen-7" || gen.Hostname != "child-7" {
		t.Errorf("generation.json = %+v, expected gen-7 and child-7", gen)
	}
	env, _ := os.ReadFile(filepath.Join(id.RunDir, "env"))
	if string(env) != "SPORE_GENERATION_ID=gen-7\nROLE=worker\n" {
		t.Errorf("env file = %q", env)
	}
	hooks, _ := os.ReadFile(log)
	if string(hooks) != "first\nsecond gen-7 worker\n" {
		t.Errorf("hook log = %q, expected first then second with the env", hooks)
	}
}

func TestIdentityHookFailureNamesHook(t *testing.T) {
	var steps []string
	id := testIdentity(t, &steps)
	writeHook(t, id.HookDir, "50-broken", "exit 4\n")
	err := id.Apply(context.Background(), &agent.SetIdentity{Generation: "g2"})
	if err == nil || !strings.Contains(err.Error(), "50-broken") || !strings.Contains(err.Error(), "exit status 4") {
		t.Errorf("Apply = %v, expected an error naming the hook and its status", err)
	}
}

func TestIdentityHookTimeout(t *testing.T) {
	var steps []string
	id := testIdentity(t, &steps)
	id.HookTimeout = 200 * time.Millisecond
	writeHook(t, id.HookDir, "10-slow", "exec sleep 10\n")
	start := time.Now()
	err := id.Apply(context.Background(), &agent.SetIdentity{Generation: "g3"})
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Errorf("Apply = %v, expected a timeout error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Apply took %v, expected the hook to be killed after 200ms", d)
	}
}

func TestIdentityRejectsInvalid(t *testing.T) {
	var steps []string
	id := testIdentity(t, &steps)
	err := id.Apply(context.Background(), &agent.SetIdentity{Generation: "../etc"})
	if err == nil || !strings.Contains(err.Error(), "generation ID") {
		t.Errorf("Apply = %v, expected a generation ID error", err)
	}
	if len(steps) != 0 {
		t.Errorf("kernel steps ran for an invalid request: %v", steps)
	}
}

// TestIdentityGatesExec runs SetIdentity through a Server: an Exec sent
// right after it starts only when the hooks are done.
func TestIdentityGatesExec(t *testing.T) {
	var steps []string
	id := testIdentity(t, &steps)
	marker := filepath.Join(t.TempDir(), "hook-done")
	writeHook(t, id.HookDir, "10-slow", "sleep 0.3; touch "+marker+"\n")

	srv := agent.NewServer(agent.ServerConfig{ApplyIdentity: id.Apply})
	hr, gw, _ := os.Pipe()
	gr, hw, _ := os.Pipe()
	defer func() {
		for _, f := range []*os.File{hr, gw, gr, hw} {
			f.Close()
		}
	}()
	go srv.Serve(context.Background(), gr, gw)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, hr, hw, agent.ClientOptions{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()

	done := make(chan error, 1)
	go func() { done <- c.SetIdentity(ctx, &agent.SetIdentity{Generation: "gen-9"}) }()
	for {
		info, err := c.Ping(ctx)
		if err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if !info.Ready {
			break // the agent is applying the identity
		}
	}
	var out strings.Builder
	st, err := c.Exec(ctx, agent.Request{Shell: "test -e " + marker + " && echo after-hooks"}, nil, &out, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if st.Code != 0 || out.String() != "after-hooks\n" {
		t.Errorf("Exec = %v, %q; expected the hook to have finished before it started", st, out.String())
	}
	if err := <-done; err != nil {
		t.Fatalf("SetIdentity: %v", err)
	}
	info, err := c.Ping(ctx)
	if err != nil || info.Generation != "gen-9" || !info.Ready {
		t.Errorf("Ping = %+v, %v; expected generation gen-9 and ready", info, err)
	}
}
