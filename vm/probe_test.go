package vm

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestProbeHost checks that the probe tells the truth on each kind of host:
// usable in the arm64 testbed, not usable with the architecture named on
// other hosts.
func TestProbeHost(t *testing.T) {
	p := ProbeHost()
	if p.GuestArch != "arm64" || p.HostArch != runtime.GOARCH {
		t.Errorf("probe arches guest=%q host=%q, want arm64 and %s", p.GuestArch, p.HostArch, runtime.GOARCH)
	}

	switch {
	case os.Getenv("SPORE_IN_TESTBED") != "":
		if !p.Usable {
			t.Fatalf("KVM not usable in the arm64 testbed: %s", p.Reason)
		}
		if p.Reason != "" || p.APIVersion != 12 {
			t.Errorf("usable probe has reason %q and API version %d, want no reason and 12", p.Reason, p.APIVersion)
		}
	case runtime.GOARCH != "arm64":
		if p.Usable {
			t.Fatalf("probe claims %s host can run arm64 guests", runtime.GOARCH)
		}
		if !strings.Contains(p.Reason, runtime.GOARCH) {
			t.Errorf("reason %q does not name the host architecture %s", p.Reason, runtime.GOARCH)
		}
	default:
		if !p.Usable && p.Reason == "" {
			t.Error("unusable probe without a reason")
		}
	}
}
