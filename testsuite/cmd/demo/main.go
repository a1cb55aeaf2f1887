// Command demo runs spore's main job end to end and prints each step as a
// shell transcript: boot a guest and warm it (a file and a background
// process), capture it, fork 4 children, fan a command out to them that
// prints each child's identity and a random number, and show the history.
// make demo runs it, inside the arm64 testbed on hosts that cannot run
// arm64 guests.
//
// It needs the spore binary in SPORE_DEMO_SPORE (default: spore in PATH)
// and uses a new store in a temporary directory.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

func main() {
	spore := os.Getenv("SPORE_DEMO_SPORE")
	if spore == "" {
		spore = "spore"
	}
	store, err := os.MkdirTemp("", "spore-demo-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(store)
	os.Setenv("SPORE_STORE", store)

	warm := `echo "warmed: $(uname -sr), $(nproc) CPUs" > /tmp/warm; ` +
		`(i=0; while :; do i=$((i+1)); echo $i > /tmp/ticks.new; mv /tmp/ticks.new /tmp/ticks; sleep 0.1; done) >/dev/null 2>&1 &`
	look := `echo "I am child $SPORE_CHILD_INDEX of $SPORE_CHILD_COUNT (generation $SPORE_GENERATION, host $(hostname), VM $SPORE_VM_ID)"; ` +
		`cat /tmp/warm; echo "ticks since warm-up: $(cat /tmp/ticks)"; echo "random: $(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' ')"`

	steps := [][]string{
		{"version"},
		{"run", "--cpus", "2", "--memory", "256M", "--capture", "warm", "-m", "warm the guest", "--", "/bin/sh", "-c", warm + " sleep 1"},
		{"fork", "warm", "--count", "4"},
		{"fanout", "warm", "--", "/bin/sh", "-c", look},
		{"run", "--from", "forks/warm/000002", "--capture", "child", "-m", "child 2, resumed once", "--", "/bin/sh", "-c", "echo child > /tmp/child"},
		{"log", "--graph", "child"},
		{"show", "forks/warm/000002:identity"},
	}
	for _, args := range steps {
		fmt.Printf("\n$ spore %s\n", quote(args))
		cmd := exec.Command(spore, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		if err := cmd.Run(); err != nil {
			fail(fmt.Errorf("spore %s: %w", args[0], err))
		}
	}
	fmt.Println("\nEach child continues the captured guest (the ticks keep counting), pages its memory in from the store, and has its own identity and random numbers.")
}

// quote prints args as a shell would need them.
func quote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " $;'\"()&|<>") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "demo: %v\n", err)
	os.Exit(1)
}
