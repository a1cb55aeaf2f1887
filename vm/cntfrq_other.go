//go:build !arm64

package vm

// timerFrequency returns 0 on hosts that are not arm64, which cannot run
// the guests anyway.
func timerFrequency() uint64 { return 0 }
