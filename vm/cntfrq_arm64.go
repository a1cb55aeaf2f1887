package vm

// readCNTFRQ returns CNTFRQ_EL0, the frequency of the system counter in Hz.
// EL0 may read it, and KVM guests see the host's value.
func readCNTFRQ() uint64

// timerFrequency returns the arch timer frequency in Hz.
func timerFrequency() uint64 { return readCNTFRQ() }
