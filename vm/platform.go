package vm

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"

	"github.com/spore-vm/spore/arch/arm64"
	"github.com/spore-vm/spore/vm/kvm"
)

// sysregID returns the KVM register ID of an AArch64 system register.
func sysregID(op0, op1, crn, crm, op2 uint64) uint64 {
	return arm64.SysregID(arm64.SysregEncoding(op0, op1, crn, crm, op2))
}

// platformRegisters are the vCPU ID registers a commit records in its
// platform contract: a guest that saw these CPU features may rely on them,
// so restore requires the same values.
var platformRegisters = map[string]uint64{
	"vcpu.midr_el1":         sysregID(3, 0, 0, 0, 0),
	"vcpu.id_aa64pfr0_el1":  sysregID(3, 0, 0, 4, 0),
	"vcpu.id_aa64pfr1_el1":  sysregID(3, 0, 0, 4, 1),
	"vcpu.id_aa64isar0_el1": sysregID(3, 0, 0, 6, 0),
	"vcpu.id_aa64isar1_el1": sysregID(3, 0, 0, 6, 1),
	"vcpu.id_aa64mmfr0_el1": sysregID(3, 0, 0, 7, 0),
	"vcpu.id_aa64mmfr1_el1": sysregID(3, 0, 0, 7, 1),
}

// Platform returns the platform contract of a snapshot: what a host must
// provide to restore it.
func (s *Snapshot) Platform() map[string]string {
	p := map[string]string{
		"arch":          "arm64",
		"backend":       "kvm",
		"board_version": strconv.Itoa(arm64.BoardVersion),
		"vgic":          "v3",
		"page_size":     strconv.Itoa(os.Getpagesize()),
		"ram_bytes":     strconv.FormatUint(s.MemoryBytes, 10),
		// The guest computes time from the counter at this rate, and the
		// rate is the host's: KVM cannot change it.
		"timer_hz": strconv.FormatUint(timerFrequency(), 10),
		"vcpus":    strconv.Itoa(len(s.CPUs)),
	}
	if len(s.CPUs) > 0 {
		for name, id := range platformRegisters {
			for _, r := range s.CPUs[0].Registers {
				if r.ID == id {
					p[name] = fmt.Sprintf("%#x", binary.LittleEndian.Uint64(r.Value))
				}
			}
		}
	}
	return p
}

// PlatformError names the field of a commit's platform contract that this
// host does not meet.
type PlatformError struct {
	Field      string
	Commit     string
	Host       string
	CommitName string
}

func (e *PlatformError) Error() string {
	return fmt.Sprintf("cannot restore %s on this host: platform field %s is %s in the commit and %s here",
		e.CommitName, e.Field, e.Commit, e.Host)
}

// HostPlatform returns this host's platform contract for a VM with the
// given shape, reading the vCPU ID registers from a scratch VM.
func HostPlatform(memoryBytes uint64, vcpus int) (map[string]string, error) {
	if runtime.GOARCH != "arm64" {
		return nil, fmt.Errorf("host architecture is %s; arm64 guests need an arm64 host", runtime.GOARCH)
	}
	sys, err := kvm.Open()
	if err != nil {
		return nil, err
	}
	defer sys.Close()
	scratch, err := sys.CreateVM(0)
	if err != nil {
		return nil, err
	}
	defer scratch.Close()
	init, err := scratch.PreferredTarget()
	if err != nil {
		return nil, err
	}
	cpu, err := scratch.CreateVCPU(0)
	if err != nil {
		return nil, err
	}
	defer cpu.Close()
	init.Features[0] |= 1 << arm64.FeaturePSCI02
	if err := cpu.Init(init); err != nil {
		return nil, err
	}

	s := Snapshot{MemoryBytes: memoryBytes, CPUs: make([]VCPUState, vcpus)}
	for _, id := range platformRegisters {
		v, err := cpu.GetOneReg(id)
		if err != nil {
			continue
		}
		s.CPUs[0].Registers = append(s.CPUs[0].Registers, Register{ID: id, Value: binary.LittleEndian.AppendUint64(nil, v)})
	}
	return s.Platform(), nil
}

// CheckPlatform compares a commit's platform contract with this host and
// returns a *PlatformError for the first field that differs, in name order.
// The board shape (RAM, vCPUs) comes from the commit itself.
func CheckPlatform(commitName string, want map[string]string) error {
	ram, _ := strconv.ParseUint(want["ram_bytes"], 10, 64)
	vcpus, _ := strconv.Atoi(want["vcpus"])
	if vcpus < 1 {
		return &PlatformError{Field: "vcpus", Commit: want["vcpus"], Host: "at least 1", CommitName: commitName}
	}
	have, err := HostPlatform(ram, vcpus)
	if err != nil {
		return fmt.Errorf("cannot restore %s: %w", commitName, err)
	}
	fields := make([]string, 0, len(want))
	for field := range want {
		fields = append(fields, field)
	}
	sort.Strings(fields)
	for _, field := range fields {
		if have[field] != want[field] {
			host := have[field]
			if host == "" {
				host = "absent"
			}
			return &PlatformError{Field: field, Commit: want[field], Host: host, CommitName: commitName}
		}
	}
	return nil
}
