package guestinit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// helperEnv names the helper a re-executed test binary runs instead of
// the tests.
const helperEnv = "SPORE_GUESTINIT_HELPER"

// helperDirEnv names a directory the helper may use; the test removes it.
const helperDirEnv = "SPORE_GUESTINIT_DIR"

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		if err := helpers[name](); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: %v\n", name, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var helpers = map[string]func() error{
	"mounts":   helperMounts,
	"loopback": helperLoopback,
}

// runInNamespaces re-executes the test binary inside new namespaces with
// unshare(1) and runs helper there. It skips the test when the host does
// not allow the namespaces.
func runInNamespaces(t *testing.T, helper string, unshareFlags ...string) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare(1) is not installed")
	}
	probe := exec.Command(unshare, append(unshareFlags, "true")...)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("cannot create namespaces %v here: %v: %s", unshareFlags, err, out)
	}
	cmd := exec.Command(unshare, append(unshareFlags, os.Args[0])...)
	cmd.Env = append(os.Environ(), helperEnv+"="+helper, helperDirEnv+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s in namespaces %v: %v\n%s", helper, unshareFlags, err, out)
	}
}

func TestEarlyMountsInNamespace(t *testing.T) {
	runInNamespaces(t, "mounts", "--mount", "--propagation", "private")
}

// helperMounts mounts EarlyMounts below a tmpfs root, checks each file
// system type and the devpts ptmx mode, mounts them again (a no-op for
// targets that are already mounted), then switches root into it.
func helperMounts() error {
	root := os.Getenv(helperDirEnv)
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs root: %w", err)
	}
	mounts := EarlyMounts(root)
	if err := MountAll(mounts); err != nil {
		return err
	}
	for _, m := range mounts {
		if !isMountOf(m.Target, m.FSType) {
			return fmt.Errorf("%s is not a %s mount after MountAll", m.Target, m.FSType)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "dev/pts/ptmx"))
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o666 {
		return fmt.Errorf("dev/pts/ptmx has mode %v, expected 0666 (ptmxmode)", fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(root, "tmp"))
	if err != nil || fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("tmp is not sticky: %v %v", fi.Mode(), err)
	}
	if err := MountAll(mounts[:1]); err != nil {
		return fmt.Errorf("second MountAll of proc: %w", err)
	}

	// Switch into the new root, keeping /proc of the helper's namespace.
	if err := os.WriteFile(filepath.Join(root, "marker"), []byte("new root"), 0o644); err != nil {
		return err
	}
	if err := unix.Unmount(filepath.Join(root, "proc"), 0); err != nil {
		return fmt.Errorf("unmount the test proc: %w", err)
	}
	if err := SwitchRoot(root, []string{"/proc"}); err != nil {
		return err
	}
	b, err := os.ReadFile("/marker")
	if err != nil || string(b) != "new root" {
		return fmt.Errorf("after SwitchRoot /marker = %q, %v", b, err)
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		return fmt.Errorf("/proc was not moved into the new root: %w", err)
	}
	return nil
}

func TestLinkUpInNetNamespace(t *testing.T) {
	runInNamespaces(t, "loopback", "--net")
}

// helperLoopback brings up lo in a new network namespace, where it
// starts down, and checks the flag.
func helperLoopback() error {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return err
	}
	if lo.Flags&net.FlagUp != 0 {
		return fmt.Errorf("lo is already up in a new network namespace")
	}
	if err := LinkUp("lo"); err != nil {
		return err
	}
	lo, _ = net.InterfaceByName("lo")
	if lo.Flags&net.FlagUp == 0 {
		return fmt.Errorf("lo is still down after LinkUp")
	}
	if err := LinkUp("no-such-if0"); err == nil || !strings.Contains(err.Error(), "no-such-if0") {
		return fmt.Errorf("LinkUp of a missing interface = %v, expected an error naming it", err)
	}
	return nil
}
