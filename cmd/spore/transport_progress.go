package main

import (
	"fmt"
	"os"

	"github.com/spore-vm/spore/transport"
	"golang.org/x/term"
)

// progressPrinter draws one progress line per blob on a terminal: bytes
// and objects of the current layer. It prints nothing when stderr is not
// a terminal or --json is set.
type progressPrinter struct {
	enabled bool
	open    bool
}

func newProgressPrinter(g *Globals) *progressPrinter {
	return &progressPrinter{enabled: !g.JSON && term.IsTerminal(int(os.Stderr.Fd()))}
}

// report is a transport.Progress callback.
func (p *progressPrinter) report(e transport.Progress) {
	if !p.enabled {
		return
	}
	label := "blob"
	if e.MediaType == transport.MediaTypePack {
		label = fmt.Sprintf("layer (%d objects)", e.Objects)
	}
	state := fmt.Sprintf("%s / %s", formatBytes(e.Done), formatBytes(e.Total))
	if e.Skipped {
		state = "already there"
	}
	fmt.Fprintf(os.Stderr, "\r\x1b[K%s %s %s", e.Digest.Encoded()[:12], label, state)
	p.open = true
	if e.Skipped || e.Done >= e.Total {
		fmt.Fprintln(os.Stderr)
		p.open = false
	}
}

// finish ends an unfinished progress line.
func (p *progressPrinter) finish() {
	if p.open {
		fmt.Fprintln(os.Stderr)
		p.open = false
	}
}
