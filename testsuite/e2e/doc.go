// Package e2e holds end-to-end tests of the spore command: each test runs
// the spore binary, which boots real guests on KVM. On x86_64 hosts they run
// inside the arm64 testbed (make e2e); elsewhere they skip unless the host
// can run arm64 guests.
package e2e
