package objects

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv selects a helper mode when the test binary re-executes itself
// as a store server or as a worker process.
const helperEnv = "SPORE_OBJECTS_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "serve":
		err := ServeDir(os.Getenv("SPORE_STORE"), ServeOptions{
			DB:          DBOptions{MinFreeBytes: -1},
			IdleTimeout: 500 * time.Millisecond,
		})
		if err != nil {
			os.Stderr.WriteString("serve: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	case "worker":
		os.Exit(runWorker(os.Args))
	}
	code := m.Run()
	if benchImageDir != "" {
		os.RemoveAll(benchImageDir)
	}
	os.Exit(code)
}

// serverCommand returns a ServerCommand that runs this test binary as a
// store server with a short idle timeout.
func serverCommand(t testing.TB) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(helperEnv, "")
	return []string{"env", helperEnv + "=serve", exe}
}

// waitServerGone registers a cleanup, to run before the removal of dir,
// that waits until no process holds the store's database, so that test
// servers exit cleanly instead of losing their directory.
func waitServerGone(t testing.TB, dir string) {
	t.Cleanup(func() {
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			// badger locks the database directory itself with flock.
			f, err := os.Open(dbDir(dir))
			if err != nil {
				return
			}
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			f.Close()
			if err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("a store server still holds %s after 15 s", dir)
	})
}
