package guestinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// VirtioPortsDir is the sysfs directory that lists virtio-console ports.
const VirtioPortsDir = "/sys/class/virtio-ports"

// ErrPortNotFound is returned by FindPort when no port has the name.
var ErrPortNotFound = errors.New("virtio-console port not found")

// FindPort returns the device path (/dev/vportNpM) of the virtio-console
// port called name, by reading sysDir/*/name (sysDir is normally
// VirtioPortsDir).
func FindPort(sysDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("list virtio-console ports: %w", err)
	}
	var seen []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue // a port without a name, such as hvc0
		}
		got := strings.TrimSpace(string(b))
		if got == name {
			return "/dev/" + e.Name(), nil
		}
		seen = append(seen, fmt.Sprintf("%s=%q", e.Name(), got))
	}
	sort.Strings(seen)
	return "", fmt.Errorf("%w: no port named %q under %s (ports: %s); the VMM must add a console port with this name",
		ErrPortNotFound, name, sysDir, strings.Join(seen, ", "))
}

// WaitPort calls FindPort until the port appears or timeout passes,
// because the kernel may probe virtio devices after init has started.
func WaitPort(sysDir, name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		p, err := FindPort(sysDir, name)
		if err == nil {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			err = fmt.Errorf("port %q is %s, which does not exist yet", name, p)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PortReader reads a virtio-console port. The kernel returns end of file
// while the host side of the port is not connected, for example between
// two VMM processes. PortReader then waits and reads again, so the agent
// reads one endless stream.
type PortReader struct {
	R     io.Reader
	Delay time.Duration // wait after an end of file; zero means 50ms
}

func (p *PortReader) Read(b []byte) (int, error) {
	delay := p.Delay
	if delay == 0 {
		delay = 50 * time.Millisecond
	}
	for {
		n, err := p.R.Read(b)
		if n > 0 || err != io.EOF {
			return n, err
		}
		time.Sleep(delay)
	}
}
