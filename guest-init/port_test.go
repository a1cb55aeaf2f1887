package guestinit

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFindPort(t *testing.T) {
	dir := t.TempDir()
	for port, name := range map[string]string{"vport0p0": "", "vport0p1": "org.other\n", "vport0p2": AgentPortName + "\n"} {
		os.MkdirAll(filepath.Join(dir, port), 0o755)
		if name != "" {
			os.WriteFile(filepath.Join(dir, port, "name"), []byte(name), 0o644)
		}
	}
	got, err := FindPort(dir, AgentPortName)
	if err != nil {
		t.Fatalf("FindPort: %v", err)
	}
	if got != "/dev/vport0p2" {
		t.Errorf("FindPort = %q, expected /dev/vport0p2", got)
	}

	_, err = FindPort(dir, "org.missing")
	if !errors.Is(err, ErrPortNotFound) || !strings.Contains(err.Error(), `vport0p1="org.other"`) {
		t.Errorf("FindPort(missing) = %v, expected ErrPortNotFound listing the ports", err)
	}
}

// eofThenData returns io.EOF a few times, as a port with no host does,
// then data.
type eofThenData struct {
	eofs int
	data string
}

func (r *eofThenData) Read(b []byte) (int, error) {
	if r.eofs > 0 {
		r.eofs--
		return 0, io.EOF
	}
	if r.data == "" {
		return 0, io.ErrClosedPipe
	}
	n := copy(b, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestPortReaderWaitsThroughEOF(t *testing.T) {
	pr := &PortReader{R: &eofThenData{eofs: 3, data: "hello"}, Delay: time.Millisecond}
	b := make([]byte, 16)
	n, err := pr.Read(b)
	if err != nil || string(b[:n]) != "hello" {
		t.Errorf("Read = %q, %v; expected hello after the EOFs", b[:n], err)
	}
	if _, err := pr.Read(b); err != io.ErrClosedPipe {
		t.Errorf("Read after the data = %v, expected the underlying error", err)
	}
}
