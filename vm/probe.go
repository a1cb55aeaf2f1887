package vm

// HostProbe is the result of checking whether this host can run spore's
// arm64 guests with KVM.
type HostProbe struct {
	// Usable is true when a VM with an arm64 vCPU could be created.
	Usable bool `json:"usable"`
	// Reason explains why the host is not usable, with what to do about it.
	// It is empty when Usable is true.
	Reason string `json:"reason,omitempty"`
	// GuestArch is the guest architecture that was probed for.
	GuestArch string `json:"guest_arch"`
	// HostArch is the architecture of this host (runtime.GOARCH).
	HostArch string `json:"host_arch"`
	// Device is the KVM device path that was checked.
	Device string `json:"device"`
	// APIVersion is the KVM API version when /dev/kvm could be opened.
	APIVersion int `json:"api_version,omitempty"`
}
