package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunRejectsFlagCombinations(t *testing.T) {
	dir := storeDir(t)
	image := filepath.Join(t.TempDir(), "root.ext4")
	if err := os.WriteFile(image, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--image", "127.0.0.1:5000/debian:test", "--rootfs", image, "--", "true"}, "--image and --rootfs"},
		{[]string{"run", "--image", "127.0.0.1:5000/debian:test", "--from", "base", "--", "true"}, "--image cannot be combined with --from"},
		{[]string{"run", "--rootfs", image, "--from", "base", "--", "true"}, "cannot be combined with --from"},
		{[]string{"run", "--rootfs-writable", "--", "true"}, "--rootfs-writable needs --rootfs"},
		{[]string{"run", "--from", "base", "--cpus", "2", "--", "true"}, "--cpus and --memory cannot be combined with --from"},
		{[]string{"run", "--from", "base", "--memory", "1G", "--", "true"}, "--cpus and --memory cannot be combined with --from"},
		{[]string{"run", "--cpus", "0", "--", "true"}, "invalid --cpus 0"},
		{[]string{"run", "--cpus=-1", "--", "true"}, "invalid --cpus -1"},
		{[]string{"--console-log", filepath.Join(image, "console.log"), "run", "--", "true"}, "--console-log " + filepath.Join(image, "console.log")},
	}
	for _, c := range cases {
		r := spore(t, dir, c.args...)
		if r.code != ExitUsage {
			t.Errorf("spore %s: exit code %d, want %d (usage)\nstderr: %s", strings.Join(c.args, " "), r.code, ExitUsage, r.stderr)
		}
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("spore %s: stderr %q lacks %q", strings.Join(c.args, " "), r.stderr, c.want)
		}
	}
}
