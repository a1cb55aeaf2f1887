// Package arm64 describes spore's aarch64 board: its memory map, the
// devices it exposes, the register sets of its vCPUs and their normalized
// form. It knows the KVM register encoding but issues no system calls.
package arm64
