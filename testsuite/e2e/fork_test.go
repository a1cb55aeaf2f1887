package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// fanoutEvent is one line of spore fanout --events=jsonl.
type fanoutEvent struct {
	Type     string `json:"type"`
	Child    string `json:"child"`
	Stream   string `json:"stream"`
	Line     string `json:"line"`
	Children int    `json:"children"`
	Failed   int    `json:"failed"`
	Result   *struct {
		ExitCode      int    `json:"exit_code"`
		Error         string `json:"error"`
		FirstOutputMS int64  `json:"first_output_ms"`
	} `json:"result"`
	ElapsedMS int64 `json:"elapsed_ms"`
}

// fanoutRun is a parsed fan-out: each child's stdout lines, the exit
// events and the summary.
type fanoutRun struct {
	stdout  map[string][]string
	exits   map[string]fanoutEvent
	summary fanoutEvent
}

func parseFanout(t testing.TB, r result) fanoutRun {
	t.Helper()
	run := fanoutRun{stdout: map[string][]string{}, exits: map[string]fanoutEvent{}}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var e fanoutEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("fanout printed a line that is not JSON: %q (%v)\nstderr:\n%s", line, err, r.stderr)
		}
		switch e.Type {
		case "output":
			if e.Stream == "stdout" {
				run.stdout[e.Child] = append(run.stdout[e.Child], e.Line)
			}
		case "exit":
			run.exits[e.Child] = e
		case "summary":
			run.summary = e
		}
	}
	return run
}

// forkChildren forks ref into count children and returns their names.
func forkChildren(t testing.TB, store, ref string, count int) []string {
	t.Helper()
	r := spore(t, "", "--store", store, "--json", "fork", ref, "--count", strconv.Itoa(count))
	if r.code != 0 {
		t.Fatalf("fork %s: status %d\n%s", ref, r.code, r.stderr)
	}
	var out struct {
		Children []struct {
			Ref string `json:"ref"`
		} `json:"children"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("fork --json: %v\n%s", err, r.stdout)
	}
	var names []string
	for _, c := range out.Children {
		names = append(names, strings.TrimPrefix(c.Ref, "refs/forks/"))
	}
	if len(names) != count {
		t.Fatalf("fork %s made %d children, expected %d", ref, len(names), count)
	}
	return names
}

// TestForkFanout warms a guest, captures it, forks 8 children and fans a
// command out to them: each child has its own RNG output, identity and
// /tmp, and the background counter of the parent runs on in each.
func TestForkFanout(t *testing.T) {
	sporeBinary(t)
	store := t.TempDir()
	warm := `echo warm > /tmp/warm; (i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done) >/dev/null 2>&1 & sleep 1`
	r := spore(t, "", "--store", store, "run", "--memory", "256M", "--capture", "base", "--", "/bin/sh", "-c", warm)
	if r.code != 0 {
		t.Fatalf("capture: status %d\n%s", r.code, r.stderr)
	}
	children := forkChildren(t, store, "base", 8)

	// Each child writes a marker, waits while its siblings write theirs,
	// then lists the markers: it must see only its own.
	script := `cat /proc/sys/kernel/random/uuid
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo
echo "$SPORE_CHILD_INDEX $SPORE_CHILD_COUNT $SPORE_GENERATION"
hostname
a=$(cat /tmp/count); sleep 1; b=$(cat /tmp/count); echo "$a $b"
cat /tmp/warm
touch /tmp/mark-$SPORE_CHILD_INDEX; sleep 2; echo /tmp/mark-*
. /run/spore/env; echo "env $SPORE_CHILD_NAME"`
	r = spore(t, "", "--store", store, "fanout", "base", "--events=jsonl", "--", "/bin/sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("fanout: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	run := parseFanout(t, r)
	if run.summary.Children != 8 || run.summary.Failed != 0 {
		t.Fatalf("summary: %d children, %d failed; expected 8 and 0\n%s", run.summary.Children, run.summary.Failed, r.stdout)
	}

	uuids, randoms := map[string]string{}, map[string]string{}
	for i, name := range children {
		lines := run.stdout[name]
		if len(lines) != 8 {
			t.Errorf("child %s printed %d lines, expected 8: %q", name, len(lines), lines)
			continue
		}
		if other, seen := uuids[lines[0]]; seen {
			t.Errorf("children %s and %s printed the same UUID %s", other, name, lines[0])
		}
		uuids[lines[0]] = name
		if other, seen := randoms[lines[1]]; seen || len(lines[1]) != 32 {
			t.Errorf("child %s random bytes %q (also printed by %q)", name, lines[1], other)
		}
		randoms[lines[1]] = name

		if want := fmt.Sprintf("%d 8 1", i); lines[2] != want {
			t.Errorf("child %s index, count, generation = %q, expected %q", name, lines[2], want)
		}
		if want := strings.ReplaceAll(name, "/", "-"); lines[3] != want {
			t.Errorf("child %s hostname = %q, expected %q", name, lines[3], want)
		}
		counts := strings.Fields(lines[4])
		a, _ := strconv.Atoi(counts[0])
		b, _ := strconv.Atoi(counts[1])
		if a < 1 || b <= a {
			t.Errorf("child %s counter %d then %d: the background process does not run on", name, a, b)
		}
		if lines[5] != "warm" {
			t.Errorf("child %s /tmp/warm = %q", name, lines[5])
		}
		if want := fmt.Sprintf("/tmp/mark-%d", i); lines[6] != want {
			t.Errorf("child %s sees markers %q, expected only its own %s", name, lines[6], want)
		}
		if want := "env " + name; lines[7] != want {
			t.Errorf("child %s env file: %q, expected %q", name, lines[7], want)
		}
	}
}

// TestForkTreeNests captures a resumed child, forks it, and again, three
// levels deep; spore log --graph shows the tree and every leaf resumes.
func TestForkTreeNests(t *testing.T) {
	sporeBinary(t)
	store := t.TempDir()
	r := spore(t, "", "--store", store, "run", "--memory", "256M", "--capture", "level0", "--", "/bin/sh", "-c", "echo 0 > /tmp/level0")
	if r.code != 0 {
		t.Fatalf("capture level0: status %d\n%s", r.code, r.stderr)
	}
	parent := "level0"
	for level := 1; level <= 2; level++ {
		children := forkChildren(t, store, parent, 2)
		next := fmt.Sprintf("level%d", level)
		r = spore(t, "", "--store", store, "run", "--from", "forks/"+children[1], "--capture", next,
			"--", "/bin/sh", "-c", fmt.Sprintf("echo %d > /tmp/%s", level, next))
		if r.code != 0 {
			t.Fatalf("capture %s from %s: status %d\n%s", next, children[1], r.code, r.stderr)
		}
		parent = next
	}
	forkChildren(t, store, parent, 2)

	r = spore(t, "", "--store", store, "log", "--graph", "level2")
	if r.code != 0 {
		t.Fatalf("log --graph: status %d\n%s", r.code, r.stderr)
	}
	for _, name := range []string{"level0", "level1", "level2", "level0/000000", "level1/000000", "level2/000001"} {
		if !strings.Contains(r.stdout, name) {
			t.Errorf("log --graph does not show %s:\n%s", name, r.stdout)
		}
	}

	// The leaves: the first child of each level (the second was captured
	// into the next level) and both children of the last. Each reads the
	// files of every level above it and prints its generation.
	check := `cat /tmp/level*; echo "gen $SPORE_GENERATION"`
	for level, leaf := range []string{"forks/level0/000000", "forks/level1/000000"} {
		r = spore(t, "", "--store", store, "run", "--from", leaf, "--", "/bin/sh", "-c", check)
		want := ""
		for l := 0; l <= level; l++ {
			want += fmt.Sprintf("%d\n", l)
		}
		want += fmt.Sprintf("gen %d\n", level+1)
		if r.code != 0 || r.stdout != want {
			t.Errorf("leaf %s: status %d, printed %q, expected %q\n%s", leaf, r.code, r.stdout, want, r.stderr)
		}
	}
	r = spore(t, "", "--store", store, "fanout", "--events=jsonl", "level2", "--", "/bin/sh", "-c", check)
	if r.code != 0 {
		t.Fatalf("fanout level2: status %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	run := parseFanout(t, r)
	for _, leaf := range []string{"level2/000000", "level2/000001"} {
		if got := strings.Join(run.stdout[leaf], ","); got != "0,1,2,gen 3" {
			t.Errorf("leaf %s printed %q, expected the files of levels 0 to 2 and generation 3", leaf, got)
		}
	}
}

// TestForkBadInput checks that bad fork arguments fail with a usage error
// that names the problem, and write no ref.
func TestForkBadInput(t *testing.T) {
	sporeBinary(t)
	store := t.TempDir()
	r := spore(t, "", "--store", store, "run", "--memory", "128M", "--capture", "base", "--", "true")
	if r.code != 0 {
		t.Fatalf("capture: status %d\n%s", r.code, r.stderr)
	}
	refsBefore := spore(t, "", "--store", store, "refs").stdout

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"fork", "base", "--count", "0"}, "invalid --count 0"},
		{[]string{"fork", "base", "--count=-2"}, "invalid --count -2"},
		{[]string{"fork", "base", "--count", "100000000"}, "invalid --count 100000000"},
		{[]string{"fork", "nosuchref", "--count", "2"}, "nosuchref"},
		{[]string{"fork", "base", "--count", "3", "--name", "worker"}, "add %d"},
		{[]string{"fanout", "base", "--", "true"}, "no fork children"},
		{[]string{"fanout", "nosuchref", "--", "true"}, "nosuchref"},
	}
	for _, tc := range cases {
		r := spore(t, "", append([]string{"--store", store}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("spore %s: status %d, stderr %q; expected status 2 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	if after := spore(t, "", "--store", store, "refs").stdout; after != refsBefore {
		t.Errorf("refs changed after failed forks:\nbefore:\n%s\nafter:\n%s", refsBefore, after)
	}
}
