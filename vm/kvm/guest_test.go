package kvm_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spore-vm/spore/arch/arm64"
	"github.com/spore-vm/spore/vm/kvm"
	"github.com/spore-vm/spore/vm/uffd"
)

// Guest physical layout of these tests: code in a RAM memslot, a second
// memslot served through userfaultfd, and an MMIO address with no memslot.
const (
	codeBase = 0x40000000
	lazyBase = 0x80000000
	mmioAddr = 0x10000000
	slotSize = 64 << 10
)

// openKVM returns /dev/kvm, skipping on hosts that cannot run arm64 guests
// unless the test runs in the testbed, where KVM must work.
func openKVM(t *testing.T) *kvm.System {
	t.Helper()
	inTestbed := os.Getenv("SPORE_IN_TESTBED") != ""
	if runtime.GOARCH != "arm64" && !inTestbed {
		t.Skipf("KVM guest tests need an arm64 host; run them with make e2e")
	}
	sys, err := kvm.Open()
	if err != nil {
		if inTestbed {
			t.Fatalf("open KVM in the testbed: %v", err)
		}
		t.Skipf("KVM unavailable: %v", err)
	}
	t.Cleanup(func() { sys.Close() })
	return sys
}

// newGuest creates a VM with code at codeBase and one vCPU about to run it.
func newGuest(t *testing.T, sys *kvm.System, code []uint32) (*kvm.VM, *kvm.VCPU) {
	t.Helper()
	vm, err := sys.CreateVM(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })

	mem := mmapAnon(t, slotSize)
	for i, insn := range code {
		binary.LittleEndian.PutUint32(mem[4*i:], insn)
	}
	if err := vm.SetUserMemoryRegion(0, 0, codeBase, slotSize, uintptr(unsafe.Pointer(&mem[0]))); err != nil {
		t.Fatal(err)
	}

	vcpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vcpu.Close() })
	init, err := vm.PreferredTarget()
	if err != nil {
		t.Fatal(err)
	}
	init.Features[0] |= 1 << arm64.FeaturePSCI02
	if err := vcpu.Init(init); err != nil {
		t.Fatal(err)
	}
	if err := vcpu.SetOneReg(arm64.RegPC, codeBase); err != nil {
		t.Fatal(err)
	}
	return vm, vcpu
}

func mmapAnon(t *testing.T, size int) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

// runToMMIO runs the vCPU on a locked thread until its next exit, which must
// be an MMIO exit.
func runToMMIO(t *testing.T, vcpu *kvm.VCPU) kvm.MMIOExit {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	reason, err := vcpu.Run()
	if err != nil {
		t.Fatal(err)
	}
	if reason != kvm.ExitMMIO {
		pc, _ := vcpu.GetOneReg(arm64.RegPC)
		t.Fatalf("exit reason %d at pc %#x, want KVM_EXIT_MMIO (%d)", reason, pc, kvm.ExitMMIO)
	}
	return vcpu.MMIO()
}

// A64 encodings of the few instructions these guests use.
func movz(rd uint32, imm16 uint32, shift uint32) uint32 {
	return 0xD2800000 | (shift/16)<<21 | imm16<<5 | rd
}
func ldr(rt, rn uint32) uint32 { return 0xF9400000 | rn<<5 | rt } // ldr xt, [xn]
func str(rt, rn uint32) uint32 { return 0xF9000000 | rn<<5 | rt } // str xt, [xn]
const branchToSelf = 0x14000000

func TestInstructionEncodings(t *testing.T) {
	// Reference encodings from the A64 instruction set.
	if got := movz(1, 0x1000, 16); got != 0xD2A20001 {
		t.Errorf("movz x1, #0x1000, lsl #16 = %#x, want 0xd2a20001", got)
	}
	if got := ldr(0, 2); got != 0xF9400040 {
		t.Errorf("ldr x0, [x2] = %#x, want 0xf9400040", got)
	}
	if got := str(0, 1); got != 0xF9000020 {
		t.Errorf("str x0, [x1] = %#x, want 0xf9000020", got)
	}
}

func TestGuestReachesMMIOExit(t *testing.T) {
	sys := openKVM(t)
	_, vcpu := newGuest(t, sys, []uint32{
		movz(1, mmioAddr>>16, 16),
		movz(0, 0xbeef, 0),
		str(0, 1),
		branchToSelf,
	})

	exit := runToMMIO(t, vcpu)
	if exit.PhysAddr != mmioAddr {
		t.Errorf("MMIO address %#x, want %#x", exit.PhysAddr, mmioAddr)
	}
	if !exit.IsWrite || exit.Len != 8 {
		t.Errorf("MMIO access write=%v len=%d, want an 8-byte write", exit.IsWrite, exit.Len)
	}
	if got := binary.LittleEndian.Uint64(exit.Data[:]); got != 0xbeef {
		t.Errorf("MMIO data %#x, want 0xbeef", got)
	}
	if x0, err := vcpu.GetOneReg(arm64.RegX(0)); err != nil || x0 != 0xbeef {
		t.Errorf("x0 = %#x (%v), want 0xbeef", x0, err)
	}
}

// TestGuestPageServedByUserfaultfd backs a memslot with memory registered
// with userfaultfd. The guest loads from it, KVM faults on the missing page
// inside the kernel, the test serves it with UFFDIO_COPY, and the guest
// stores the loaded value to MMIO, where the test checks it.
func TestGuestPageServedByUserfaultfd(t *testing.T) {
	sys := openKVM(t)
	vm, vcpu := newGuest(t, sys, []uint32{
		movz(1, mmioAddr>>16, 16),
		movz(2, lazyBase>>16, 16),
		ldr(0, 2),
		str(0, 1),
		branchToSelf,
	})

	uf, err := uffd.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer uf.Close()
	lazy := mmapAnon(t, slotSize)
	lazyAddr := uintptr(unsafe.Pointer(&lazy[0]))
	if err := uf.Register(lazyAddr, slotSize); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetUserMemoryRegion(1, 0, lazyBase, slotSize, lazyAddr); err != nil {
		t.Fatal(err)
	}

	pageSize := os.Getpagesize()
	page := bytes.Repeat([]byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}, pageSize/8)
	served := make(chan error, 1)
	go func() {
		fault, err := uf.ReadFault()
		if err != nil {
			served <- err
			return
		}
		if got := fault.Address &^ uintptr(pageSize-1); got != lazyAddr {
			// Fill the page anyway so the vCPU does not stay blocked.
			uf.Copy(got, make([]byte, pageSize))
			served <- fmt.Errorf("fault on page %#x, expected page %#x", got, lazyAddr)
			return
		}
		served <- uf.Copy(lazyAddr, page)
	}()

	exit := runToMMIO(t, vcpu)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if got, want := binary.LittleEndian.Uint64(exit.Data[:]), binary.LittleEndian.Uint64(page); got != want {
		t.Errorf("guest stored %#x from the served page, want %#x", got, want)
	}
	if lazy[0] != 0x11 {
		t.Errorf("host view of served page starts with %#x, want 0x11", lazy[0])
	}
}
