// Command bootinit is PID 1 of the guests that vm's tests boot: it reports
// what the guest sees on the console and powers the VM off.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	unix.Mount("proc", "/proc", "proc", 0, "")
	if console, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		os.Stdout = console
	}

	meminfo, _ := os.ReadFile("/proc/meminfo")
	memTotal, _, _ := strings.Cut(string(meminfo), "\n")
	fmt.Printf("spore-bootinit: cpus=%d %s\n", runtime.NumCPU(), strings.Join(strings.Fields(memTotal), " "))

	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
