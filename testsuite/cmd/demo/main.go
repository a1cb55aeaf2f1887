// Command demo runs spore's main job end to end and prints each step as a
// shell transcript: boot a guest and warm it, capture it, resume the commit
// twice, capture a child and show the history. make demo runs it, inside
// the arm64 testbed on hosts that cannot run arm64 guests.
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
	look := `cat /tmp/warm; echo "ticks since warm-up: $(cat /tmp/ticks)"; echo "random: $(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' ')"`

	steps := [][]string{
		{"version"},
		{"run", "--cpus", "2", "--memory", "256M", "--capture", "warm", "-m", "warm the guest", "--", "/bin/sh", "-c", warm},
		{"run", "--from", "warm", "--", "/bin/sh", "-c", look},
		{"run", "--from", "warm", "--capture", "child", "-m", "resumed once", "--", "/bin/sh", "-c", look + "; echo child > /tmp/child"},
		{"run", "--from", "child", "--", "/bin/sh", "-c", "cat /tmp/child; " + look},
		{"log", "child"},
		{"show", "child:config"},
	}
	for _, args := range steps {
		fmt.Printf("\n$ spore %s\n", quote(args))
		cmd := exec.Command(spore, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		if err := cmd.Run(); err != nil {
			fail(fmt.Errorf("spore %s: %w", args[0], err))
		}
	}
	fmt.Println("\nThe ticks keep counting across resumes: each resume continues the captured guest, paging its memory in from the store.")
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
