package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spore-vm/spore/guest-init/agent"
	"github.com/spore-vm/spore/objects"
	"github.com/spore-vm/spore/refs"
	"github.com/spore-vm/spore/vm/guest"
)

// capture commits the guest and prints the commit on stderr.
func (c *RunCmd) capture(gst *guest.Guest, store *objects.Store, refsDB *refs.Refs, ref string, running *agent.Session) (string, *guest.CaptureStats, error) {
	message := c.Message
	if message == "" {
		message = "spore run " + strings.Join(c.Command, " ")
	}
	id, stats, err := gst.Capture(guest.CaptureOptions{
		Store:   store,
		Refs:    refsDB,
		Ref:     ref,
		Author:  captureAuthor(),
		Message: message,
		Session: running,
	})
	if err != nil {
		return "", nil, err
	}
	if running != nil {
		fmt.Fprintf(os.Stderr, "spore: captured %s as %s with the command still running\n", refs.ShortName(ref), id.String()[:12])
	} else {
		fmt.Fprintf(os.Stderr, "spore: captured %s as %s\n", refs.ShortName(ref), id.String()[:12])
	}
	return id.String(), &stats, nil
}

// captureAuthor names the user and host that made a commit.
func captureAuthor() string {
	user := os.Getenv("USER")
	if user == "" {
		user = fmt.Sprintf("uid %d", os.Getuid())
	}
	host, _ := os.Hostname()
	return user + "@" + host
}

// fullRefName turns a branch name into refs/heads/NAME; names that start
// with refs/ stay as they are.
func fullRefName(name string) (string, error) {
	full := name
	if !strings.HasPrefix(name, "refs/") {
		full = "refs/heads/" + name
	}
	if err := refs.ValidateName(full); err != nil {
		return "", fmt.Errorf("invalid --capture %q: %w", name, err)
	}
	return full, nil
}
