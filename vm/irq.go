package vm

import (
	"log/slog"
	"sync"

	"github.com/spore-vm/spore/vm/kvm"
)

// spiLine is a level-triggered shared peripheral interrupt driven through
// KVM_IRQ_LINE. It implements the device packages' InterruptLine.
type spiLine struct {
	vm     *kvm.VM
	spi    uint32
	logger *slog.Logger
	mu     sync.Mutex
	// level is the line's last value sent to KVM.
	level bool
}

// SetLevel drives the line. Repeated values are sent again, because a
// device raising an interrupt that is already high must not be lost when
// the guest lowered it through an acknowledge in between.
func (l *spiLine) SetLevel(asserted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.level = asserted
	if err := l.vm.IRQLine(kvm.SPILine(l.spi), asserted); err != nil {
		l.logger.Error("set interrupt level failed", "spi", l.spi, "level", asserted, "err", err)
	}
}
