package objects

import (
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sync"
)

// Formatter prints the content of a state blob, such as the registers in
// vcpu/0, in readable form for spore show.
type Formatter func(w io.Writer, data []byte) error

var (
	formattersMu sync.RWMutex
	formatters   = map[string]Formatter{}
)

// RegisterFormatter registers f for tree entries whose name matches pattern
// (path.Match syntax, such as "vcpu/*" or "devices/virtio-blk*"). The VM
// packages register formatters for their state blobs from init functions.
// Registering an invalid pattern panics.
func RegisterFormatter(pattern string, f Formatter) {
	if _, err := path.Match(pattern, ""); err != nil {
		panic(fmt.Sprintf("objects: invalid formatter pattern %q: %v", pattern, err))
	}
	formattersMu.Lock()
	formatters[pattern] = f
	formattersMu.Unlock()
}

// FormatterFor returns the formatter registered for a tree entry name, or
// HexSummary when none matches. An exact pattern wins over a wildcard one.
func FormatterFor(name string) Formatter {
	formattersMu.RLock()
	defer formattersMu.RUnlock()
	if f, ok := formatters[name]; ok {
		return f
	}
	best := ""
	for pattern := range formatters {
		if ok, _ := path.Match(pattern, name); ok && len(pattern) > len(best) {
			best = pattern
		}
	}
	if best != "" {
		return formatters[best]
	}
	return HexSummary
}

// hexSummaryBytes is how many bytes HexSummary dumps.
const hexSummaryBytes = 256

// HexSummary prints the length, the number of zero bytes and a hex dump of
// the first 256 bytes.
func HexSummary(w io.Writer, data []byte) error {
	zeros := 0
	for _, b := range data {
		if b == 0 {
			zeros++
		}
	}
	if _, err := fmt.Fprintf(w, "%d bytes, %d of them zero\n", len(data), zeros); err != nil {
		return err
	}
	shown := data[:min(len(data), hexSummaryBytes)]
	if _, err := io.WriteString(w, hex.Dump(shown)); err != nil {
		return err
	}
	if len(data) > len(shown) {
		_, err := fmt.Fprintf(w, "... %d more bytes\n", len(data)-len(shown))
		return err
	}
	return nil
}
