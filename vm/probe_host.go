package vm

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/spore-vm/spore/vm/kvm"
)

// guestArch is the only guest architecture spore's board supports.
const guestArch = "arm64"

// ProbeHost checks whether this host can run arm64 guests with KVM and
// explains why not. It opens /dev/kvm and, on arm64, creates and closes a
// scratch VM to query its capabilities.
func ProbeHost() HostProbe {
	p := HostProbe{GuestArch: guestArch, HostArch: runtime.GOARCH, Device: kvm.DevicePath}

	if runtime.GOOS != "linux" {
		p.Reason = fmt.Sprintf("host OS is %s: spore needs Linux with KVM", runtime.GOOS)
		return p
	}

	sys, err := kvm.Open()
	if err != nil {
		p.Reason = describeOpenError(err)
		if runtime.GOARCH != guestArch {
			p.Reason = archReason() + "; also " + p.Reason
		}
		return p
	}
	defer sys.Close()
	p.APIVersion, _ = sys.APIVersion()

	if runtime.GOARCH != guestArch {
		p.Reason = archReason()
		return p
	}

	if missing := missingCapabilities(sys); missing != "" {
		p.Reason = missing
		return p
	}
	p.Usable = true
	return p
}

// archReason explains that KVM only runs guests of the host architecture.
func archReason() string {
	return fmt.Sprintf("host architecture is %s and KVM runs only guests of the host architecture; "+
		"run spore on an arm64 host, or use the arm64 testbed (make e2e) for development", runtime.GOARCH)
}

// describeOpenError turns a failed open of /dev/kvm into a reason with a fix.
func describeOpenError(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ENOENT):
		return kvm.DevicePath + " does not exist: enable virtualization and load KVM (modprobe kvm)"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return "permission denied opening " + kvm.DevicePath +
			": add your user to the group that owns it (usually kvm: sudo usermod -aG kvm $USER) and log in again"
	default:
		return err.Error()
	}
}

// missingCapabilities returns a reason naming the first KVM capability the
// board needs that the host lacks, or "" when all are present.
func missingCapabilities(sys *kvm.System) string {
	required := []struct {
		cap  int
		name string
	}{
		{kvm.CapUserMemory, "KVM_CAP_USER_MEMORY"},
		{kvm.CapOneReg, "KVM_CAP_ONE_REG"},
		{kvm.CapDeviceCtrl, "KVM_CAP_DEVICE_CTRL"},
		{kvm.CapARMPSCI02, "KVM_CAP_ARM_PSCI_0_2"},
		{kvm.CapIRQFD, "KVM_CAP_IRQFD"},
		{kvm.CapImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"},
	}
	for _, r := range required {
		v, err := sys.CheckExtension(r.cap)
		if err != nil {
			return fmt.Sprintf("checking %s: %v", r.name, err)
		}
		if v == 0 {
			return fmt.Sprintf("the host kernel's KVM lacks %s, which spore needs; use Linux 5.10 or newer", r.name)
		}
	}
	vm, err := sys.CreateVM(0)
	if err != nil {
		return fmt.Sprintf("creating a scratch VM failed: %v", err)
	}
	defer vm.Close()
	if _, err := vm.PreferredTarget(); err != nil {
		return fmt.Sprintf("KVM reports no preferred arm64 vCPU target: %v", err)
	}
	return ""
}
