// Package testbed runs arm64 programs on a real KVM/arm64 host emulated by
// QEMU, so that spore's VM code can be tested on x86_64 machines.
//
// The testbed is QEMU TCG (-M virt,virtualization=on,gic-version=3 -cpu
// neoverse-n1) booting Debian's cloud arm64 kernel, which has KVM and
// userfaultfd built in. Run builds an initramfs on the fly that holds a small
// init (package hostinit) and the payload: an arm64 binary with its
// arguments, environment and files. The init runs the payload, and its exit
// status comes back to the caller.
//
// Output: the payload's stdout and stderr share the emulated serial line,
// so they arrive merged, in order, on Config.Stdout. Kernel messages at
// warning level and above may appear between them.
//
// Absolute times inside the testbed are emulated and far slower than real
// hardware; measure ratios and counts, never durations.
package testbed
