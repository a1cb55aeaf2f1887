package uffd

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	sysioctl "github.com/spore-vm/spore/vm/internal/ioctl"
)

func TestIoctlSizes(t *testing.T) {
	cases := []struct {
		name    string
		request uintptr
		size    uintptr
	}{
		{"UFFDIO_API", _UFFDIO_API, unsafe.Sizeof(uffdioAPI{})},
		{"UFFDIO_REGISTER", _UFFDIO_REGISTER, unsafe.Sizeof(uffdioRegister{})},
		{"UFFDIO_UNREGISTER", _UFFDIO_UNREGISTER, unsafe.Sizeof(uffdioRange{})},
		{"UFFDIO_WAKE", _UFFDIO_WAKE, unsafe.Sizeof(uffdioRange{})},
		{"UFFDIO_COPY", _UFFDIO_COPY, unsafe.Sizeof(uffdioCopy{})},
		{"UFFDIO_ZEROPAGE", _UFFDIO_ZEROPAGE, unsafe.Sizeof(uffdioZeropage{})},
	}
	for _, c := range cases {
		if got := sysioctl.Size(c.request); got != c.size {
			t.Errorf("%s (%#x) encodes %d bytes, Go struct has %d", c.name, c.request, got, c.size)
		}
	}
}

// TestServeFaultFromUserspace registers an anonymous mapping, touches it
// from a goroutine and serves the fault with Copy for the first page and
// ZeroPage for the second. It runs on any Linux host that permits
// userfaultfd, and fails in the testbed, where it must be permitted.
func TestServeFaultFromUserspace(t *testing.T) {
	f, err := Open()
	if err != nil {
		if os.Getenv("SPORE_IN_TESTBED") == "" {
			t.Skipf("userfaultfd unavailable on this host: %v", err)
		}
		t.Fatal(err)
	}
	defer f.Close()

	page := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	base := uintptr(unsafe.Pointer(&mem[0]))
	if err := f.Register(base, uint64(2*page)); err != nil {
		t.Fatal(err)
	}

	read := make(chan [2]byte, 1)
	go func() { read <- [2]byte{mem[5], mem[page+5]} }()
	// On failure, fill both pages before the deferred Munmap, so the reader
	// is released instead of faulting on unmapped memory.
	defer func() {
		if t.Failed() {
			f.ZeroPage(base, uint64(page))
			f.ZeroPage(base+uintptr(page), uint64(page))
			<-read
		}
	}()

	content := bytes.Repeat([]byte{0x5a}, page)
	for served := 0; served < 2; served++ {
		fault, err := f.ReadFault()
		if err != nil {
			t.Fatal(err)
		}
		pageAddr := fault.Address &^ uintptr(page-1)
		if fault.Write {
			t.Errorf("fault at %#x reported as write, was a read", fault.Address)
		}
		switch pageAddr {
		case base:
			err = f.Copy(pageAddr, content)
		case base + uintptr(page):
			err = f.ZeroPage(pageAddr, uint64(page))
		default:
			t.Fatalf("fault at %#x outside the registered range [%#x, +%#x)", fault.Address, base, 2*page)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	got := <-read
	if got[0] != 0x5a {
		t.Errorf("copied page reads %#x, want 0x5a", got[0])
	}
	if got[1] != 0 {
		t.Errorf("zero page reads %#x, want 0", got[1])
	}
}

func TestReadFaultAfterClose(t *testing.T) {
	f, err := Open()
	if err != nil {
		t.Skipf("userfaultfd unavailable on this host: %v", err)
	}
	f.Close()
	if _, err := f.ReadFault(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadFault after Close: %v, want os.ErrClosed", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
