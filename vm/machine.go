package vm

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/spore-vm/spore/arch/arm64"
	"github.com/spore-vm/spore/vm/kvm"
	"github.com/spore-vm/spore/vm/pl011"
	"github.com/spore-vm/spore/vm/virtio"
)

// Config describes a VM to boot.
type Config struct {
	// Kernel is an uncompressed arm64 Linux Image.
	Kernel []byte
	// Initrd is an optional initramfs archive.
	Initrd []byte
	// Cmdline is the kernel command line.
	Cmdline string
	// MemoryBytes is the guest RAM size, a multiple of 2 MiB.
	MemoryBytes uint64
	// VCPUs is the number of virtual CPUs.
	VCPUs int
	// Console receives what the guest writes to the PL011 UART; nil
	// discards it.
	Console io.Writer
	// Devices are the virtio devices, in board order: device i gets virtio
	// window i and its interrupt.
	Devices []virtio.Device
	// Logger receives VMM logs; nil means slog.Default().
	Logger *slog.Logger
}

// ExitReason is the reason a VM stopped.
type ExitReason int

const (
	// ExitPowerOff is a PSCI SYSTEM_OFF from the guest.
	ExitPowerOff ExitReason = iota + 1
	// ExitReset is a PSCI SYSTEM_RESET from the guest.
	ExitReset
	// ExitCrash is a guest-reported crash (PSCI SYSTEM_OFF2 or a crash
	// event).
	ExitCrash
	// ExitStopped means the host stopped the VM (context cancelled).
	ExitStopped
)

func (r ExitReason) String() string {
	switch r {
	case ExitPowerOff:
		return "power off"
	case ExitReset:
		return "reset"
	case ExitCrash:
		return "crash"
	case ExitStopped:
		return "stopped by host"
	}
	return fmt.Sprintf("exit reason %d", int(r))
}

// Machine is a booted, not yet running, VM: guest RAM, vCPUs, the vGIC
// and devices.
type Machine struct {
	cfg    Config
	logger *slog.Logger

	sys   *kvm.System
	vm    *kvm.VM
	gic   *kvm.Device
	ram   *guestRAM
	vcpus []*vcpu
	bus   bus

	// mem is guest RAM as the virtio devices see it.
	mem        *virtio.Memory
	transports []*virtio.Transport

	// lazy serves guest RAM faults during a lazy restore; nil otherwise.
	lazy *lazyMemory

	// pause parks the vCPUs for Pause.
	pause pauser

	stopOnce sync.Once
	// stopped is closed once a stop was requested; result and err hold why.
	stopped chan struct{}
	result  ExitReason
	err     error
}

// New creates the VM, loads the kernel and prepares the vCPUs to boot it.
// The caller runs it with Run and releases it with Close.
func New(cfg Config) (*Machine, error) {
	// Check the kernel and the board before touching KVM.
	header, err := arm64.ParseImageHeader(cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	layout, err := planBoot(cfg.MemoryBytes, header, len(cfg.Kernel), len(cfg.Initrd))
	if err != nil {
		return nil, err
	}
	board := arm64.Board{
		MemoryBytes: cfg.MemoryBytes,
		VCPUs:       cfg.VCPUs,
		Cmdline:     cfg.Cmdline,
		InitrdStart: layout.initrdStart,
		InitrdEnd:   layout.initrdEnd,
		KASLRSeed:   randomUint64(),
		RNGSeed:     randomBytes(64),
	}
	for i := range cfg.Devices {
		board.Virtio = append(board.Virtio, arm64.VirtioDevice{Index: i})
	}
	fdt, err := board.DeviceTree()
	if err != nil {
		return nil, err
	}

	m, err := create(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := m.boot(layout, cfg.Kernel, cfg.Initrd, fdt); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// create makes the parts every machine has, booted or restored: the VM,
// guest RAM, initialized vCPUs, the vGIC and the devices. Guest RAM is
// anonymous memory, or a private mapping of shared when it is not nil.
func create(cfg Config, shared *SharedMemory) (m *Machine, err error) {
	m = &Machine{cfg: cfg, logger: cfg.Logger, stopped: make(chan struct{})}
	if m.logger == nil {
		m.logger = slog.Default()
	}
	m.bus.logger = m.logger
	m.pause.init()
	defer func() {
		if err != nil {
			m.Close()
		}
	}()

	if m.sys, err = kvm.Open(); err != nil {
		return nil, err
	}
	if m.vm, err = m.sys.CreateVM(0); err != nil {
		return nil, err
	}
	if shared != nil {
		m.ram, err = newSharedGuestRAM(arm64.RAMBase, shared)
	} else {
		m.ram, err = newGuestRAM(arm64.RAMBase, cfg.MemoryBytes)
	}
	if err != nil {
		return nil, err
	}
	// Dirty logging is always on, so a capture can write only what
	// changed since the machine started.
	if err = m.vm.SetUserMemoryRegion(ramSlot, kvm.MemLogDirtyPages, arm64.RAMBase, cfg.MemoryBytes, m.ram.hostAddr()); err != nil {
		return nil, err
	}

	// vCPUs first, then the vGIC, whose initialization needs them all.
	if err = m.createVCPUs(); err != nil {
		return nil, err
	}
	if m.gic, err = createGIC(m.vm); err != nil {
		return nil, err
	}
	if err = m.attachDevices(); err != nil {
		return nil, err
	}
	return m, nil
}

// boot loads the kernel, initrd and device tree and points vCPU 0 at the
// kernel entry.
func (m *Machine) boot(layout bootLayout, kernel, initrd, fdt []byte) error {
	if err := layout.load(m.ram, kernel, initrd, fdt); err != nil {
		return err
	}
	m.logger.Debug("guest memory laid out",
		"ram", fmt.Sprintf("[%#x, +%d MiB)", uint64(arm64.RAMBase), m.cfg.MemoryBytes>>20),
		"kernel", fmt.Sprintf("%#x-%#x", layout.kernelAddr, layout.kernelEnd),
		"initrd", fmt.Sprintf("%#x-%#x", layout.initrdStart, layout.initrdEnd),
		"fdt", fmt.Sprintf("%#x (%d bytes)", layout.fdtAddr, len(fdt)))
	return m.setBootRegisters(layout)
}

// attachDevices puts the UART and the virtio transports on the MMIO bus.
func (m *Machine) attachDevices() error {
	console := m.cfg.Console
	if console == nil {
		console = io.Discard
	}
	uart := pl011.New(console, &spiLine{vm: m.vm, spi: arm64.PL011SPI, logger: m.logger})
	if err := m.bus.add("pl011", arm64.PL011Base, arm64.PL011Size, uart); err != nil {
		return err
	}

	var err error
	if m.mem, err = virtio.NewMemory(arm64.RAMBase, m.ram.mem); err != nil {
		return err
	}
	for i, dev := range m.cfg.Devices {
		window := arm64.VirtioDevice{Index: i}
		line := &spiLine{vm: m.vm, spi: window.SPI(), logger: m.logger}
		t, err := virtio.NewTransport(dev, m.mem, line, m.logger)
		if err != nil {
			return fmt.Errorf("virtio device %d: %w", i, err)
		}
		name := fmt.Sprintf("virtio%d", i)
		if err := m.bus.add(name, window.Base(), arm64.VirtioSize, t); err != nil {
			return err
		}
		m.transports = append(m.transports, t)
		m.logger.Debug("virtio device attached", "name", name, "base", fmt.Sprintf("%#x", window.Base()), "spi", window.SPI())
	}
	return nil
}

// Run runs the vCPUs until the guest powers off or resets, a vCPU fails, or
// ctx is done, and returns why the VM stopped. A Machine runs once.
func (m *Machine) Run(ctx context.Context) (ExitReason, error) {
	var wg sync.WaitGroup
	for _, c := range m.vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop(m)
		}()
	}

	select {
	case <-m.stopped:
	case <-ctx.Done():
		m.stop(ExitStopped, nil)
	}

	// Kick again until every vCPU thread returned: a signal that arrived
	// while a thread was outside KVM_RUN is not seen by the next KVM_RUN,
	// and immediate_exit may have been cleared by a pause in between.
	exited := make(chan struct{})
	go func() {
		wg.Wait()
		close(exited)
	}()
	for waited := time.Duration(0); ; waited += time.Second {
		select {
		case <-exited:
			return m.result, m.err
		case <-time.After(time.Second):
		}
		if waited == 30*time.Second {
			m.logger.Error("vCPUs still running 30 s after the machine stopped", "vcpus", len(m.vcpus))
		}
		for _, c := range m.vcpus {
			c.kick()
		}
	}
}

// stop records the first reason to stop and kicks every vCPU out of the
// guest. Later calls do nothing.
func (m *Machine) stop(reason ExitReason, err error) {
	m.stopOnce.Do(func() {
		m.result, m.err = reason, err
		close(m.stopped)
		m.pause.wake()
		for _, c := range m.vcpus {
			c.kick()
		}
	})
}

// Close releases the vCPUs, the vGIC, the VM and guest RAM. It must not be
// called while Run is running.
func (m *Machine) Close() error {
	var errs []error
	for _, c := range m.vcpus {
		errs = append(errs, c.kvm.Close())
	}
	if m.gic != nil {
		errs = append(errs, m.gic.Close())
	}
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
	}
	if m.lazy != nil {
		m.lazy.close()
		m.lazy = nil
	}
	if m.ram != nil {
		errs = append(errs, m.ram.close())
	}
	return errors.Join(errs...)
}

func randomUint64() uint64 {
	return binary.LittleEndian.Uint64(randomBytes(8))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
