package e2e

import (
	"testing"
)

// BenchmarkFanout8 compares a fan-out of 8 children of one commit with 8
// resumes one after another: the time until every child has printed its
// first line, against the time the sequential run takes to finish.
// Absolute times in the testbed are emulated; the ratio is the result.
func BenchmarkFanout8(b *testing.B) {
	sporeBinary(b)
	store := b.TempDir()
	warm := `(while :; do sleep 0.1; done) >/dev/null 2>&1 & echo warm > /tmp/warm`
	r := spore(b, "", "--store", store, "run", "--memory", "256M", "--capture", "base", "--", "/bin/sh", "-c", warm)
	if r.code != 0 {
		b.Fatalf("capture: status %d\n%s", r.code, r.stderr)
	}
	forkChildren(b, store, "base", 8)

	for b.Loop() {
		par := parseFanout(b, spore(b, "", "--store", store, "fanout", "--events=jsonl", "base", "--", "cat", "/tmp/warm"))
		seq := parseFanout(b, spore(b, "", "--store", store, "fanout", "--events=jsonl", "--parallel", "1", "base", "--", "cat", "/tmp/warm"))
		if par.summary.Failed != 0 || seq.summary.Failed != 0 || len(par.exits) != 8 || len(seq.exits) != 8 {
			b.Fatalf("fan-outs failed: %d and %d of 8 children", par.summary.Failed, seq.summary.Failed)
		}

		var allFirst int64
		for _, e := range par.exits {
			allFirst = max(allFirst, e.Result.FirstOutputMS)
		}
		b.ReportMetric(float64(allFirst), "all-first-output-ms")
		b.ReportMetric(float64(seq.summary.ElapsedMS), "sequential-ms")
		b.ReportMetric(float64(allFirst)/float64(seq.summary.ElapsedMS), "parallel/sequential")
	}
}
