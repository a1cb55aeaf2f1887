package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spore-vm/spore/objects"
)

// FsckCmd verifies the objects that refs and reflogs reach.
type FsckCmd struct{}

// fsckResult is the --json form of spore fsck.
type fsckResult struct {
	Refs     int               `json:"refs"`
	Roots    int               `json:"roots"`
	Objects  int               `json:"objects"`
	Problems []objects.Problem `json:"problems"`
}

func (c *FsckCmd) Run(g *Globals) error {
	s, r, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	list, err := r.List("")
	if err != nil {
		return err
	}
	roots := map[string]objects.ID{}
	for _, ref := range list {
		if ref.Value.Symbolic == "" {
			roots[ref.Name] = ref.Value.ID
		}
		log, err := r.Reflog(ref.Name)
		if err != nil {
			return err
		}
		for i, e := range log {
			if !e.New.IsZero() {
				roots[fmt.Sprintf("%s@{%d}", ref.Name, len(log)-1-i)] = e.New
			}
		}
	}
	report, err := s.Fsck(roots)
	if err != nil {
		return err
	}
	res := fsckResult{Refs: len(list), Roots: len(roots), Objects: report.Objects, Problems: report.Problems}
	if res.Problems == nil {
		res.Problems = []objects.Problem{}
	}
	if g.JSON {
		if err := writeJSON(os.Stdout, res); err != nil {
			return err
		}
	} else {
		for _, p := range report.Problems {
			what := "corrupt"
			if p.Missing {
				what = "missing"
			}
			fmt.Printf("%s %s: %s\n  needed by: %s\n", what, p.ID, p.Error, strings.Join(p.NeededBy, ", "))
		}
		fmt.Printf("checked %d objects reached from %d refs and their reflogs: %d problems\n", report.Objects, len(list), len(report.Problems))
	}
	if len(report.Problems) > 0 {
		return withExitCode(ExitFailure, fmt.Errorf("fsck found %d missing or corrupt objects", len(report.Problems)))
	}
	return nil
}

// GCCmd deletes unreachable objects.
type GCCmd struct {
	Grace        time.Duration `help:"Keep objects that a writer stored or looked up within this duration, because a ref may be about to point at them." default:"1h"`
	DryRun       bool          `help:"Count what would be deleted without deleting it."`
	ExpireReflog time.Duration `help:"First delete reflog entries older than this (such as 720h), so that objects only they reach can go; 0 keeps every entry." default:"0"`
}

func (c *GCCmd) Run(g *Globals) error {
	if c.Grace <= 0 {
		return withExitCode(ExitUsage, fmt.Errorf("invalid --grace %v: it must be positive; a short grace may delete objects of a capture in progress", c.Grace))
	}
	s, _, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	if c.ExpireReflog < 0 {
		return withExitCode(ExitUsage, fmt.Errorf("invalid --expire-reflog %v: it must not be negative", c.ExpireReflog))
	}
	stats, err := s.Backend().GC(objects.GCOptions{Grace: c.Grace, DryRun: c.DryRun, ExpireReflogs: c.ExpireReflog})
	if err != nil {
		return err
	}
	if g.JSON {
		return writeJSON(os.Stdout, map[string]any{"dry_run": c.DryRun, "stats": stats})
	}
	verb := "deleted"
	if c.DryRun {
		verb = "would delete"
	}
	fmt.Printf("%s %d objects (%d bytes); kept %d reachable from %d roots and %d recently written\n",
		verb, stats.Deleted, stats.DeletedBytes, stats.Reachable, stats.Roots, stats.KeptRecent)
	if stats.ExpiredReflogEntries > 0 {
		fmt.Printf("%s %d reflog entries older than %v\n", map[bool]string{true: "would expire", false: "expired"}[c.DryRun], stats.ExpiredReflogEntries, c.ExpireReflog)
	}
	if stats.MissingReached > 0 {
		fmt.Printf("%d reachable objects are missing; run spore fsck\n", stats.MissingReached)
	}
	return nil
}
