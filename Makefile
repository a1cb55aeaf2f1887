# spore's front door. `make` builds, `make test` runs everything CI runs.
# VM tests run natively on an arm64 host with a usable /dev/kvm, and inside
# the arm64 KVM testbed (QEMU) everywhere else.

GO       ?= go
PREFIX   ?= $(HOME)
BINDIR   ?= $(PREFIX)/bin
SHAREDIR ?= $(PREFIX)/share/spore
BIN      := $(CURDIR)/bin

# Packages whose tests need KVM; they run in the testbed on x86_64 hosts.
E2E_PKGS ?= ./vm/... ./arch/... ./testsuite/e2e
# Time limit of one package's tests inside the testbed (emulated, so slow).
E2E_TIMEOUT ?= 20m

HOST_ARCH  := $(shell uname -m)
NATIVE_KVM := $(shell [ "$(HOST_ARCH)" = aarch64 ] && [ -w /dev/kvm ] && echo yes)

# Runtime assets of spore.
# The default guest kernel, from the Go module cache.
GUEST_KERNEL = $(shell $(GO) list -m -f '{{.Dir}}' github.com/gokrazy/kernel.arm64)/vmlinuz
# The guest init archive that spore embeds.
GUEST_INITRD := guest-init/initrd/assets/init.cpio
# A static arm64 busybox from Debian: the shell of guests without a root disk.
DEB_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/spore/debs
BUSYBOX   := $(DEB_CACHE)/busybox-static/bin/busybox

# Guest programs that VM tests boot; built for arm64 before the tests run.
GUEST_TEST_BINARIES := vm/testdata/bootinit.arm64
# spore itself, built for arm64, for the end-to-end tests in the testbed.
SPORE_ARM64 := $(BIN)/spore-arm64
# A small ext4 root file system with busybox, for --rootfs tests.
TEST_ROOTFS := $(BIN)/test-rootfs.ext4
# e2fsprogs and its libraries for arm64, unpacked from Debian packages, so
# spore rootfs build runs in the testbed (SPORE_E2FSPROGS).
E2FSPROGS_ARM64 := $(DEB_CACHE)/e2fsprogs-arm64
E2FSPROGS_ARM64_DEBS := e2fsprogs libext2fs2 libss2 libcom-err2 libblkid1 libuuid1 libc6
# The busybox test image as an OCI image layout, for spore rootfs tests.
TEST_IMAGE_BUSYBOX := $(BIN)/images/busybox

.PHONY: all build test unit e2e bench install vet clean testbed-exec demo FORCE

all: build

# bin/spore finds its runtime assets in share/spore beside bin/, as an
# installed spore finds them under PREFIX.
build: $(GUEST_INITRD) $(BUSYBOX)
	$(GO) build -o $(BIN)/spore ./cmd/spore
	install -d share/spore/kernel share/spore/busybox
	install -m 0644 $(GUEST_KERNEL) share/spore/kernel/Image
	install -m 0755 $(BUSYBOX) share/spore/busybox/busybox

$(GUEST_INITRD): FORCE
	$(GO) run ./guest-init/cmd/mkinitrd -o $@

$(BUSYBOX):
	rm -rf $(DEB_CACHE)/busybox-static.tmp && mkdir -p $(DEB_CACHE)/busybox-static.tmp
	cd $(DEB_CACHE)/busybox-static.tmp && apt-get download busybox-static:arm64
	dpkg-deb -x $(DEB_CACHE)/busybox-static.tmp/*.deb $(DEB_CACHE)/busybox-static.tmp/root
	rm -rf $(DEB_CACHE)/busybox-static
	mv $(DEB_CACHE)/busybox-static.tmp/root $(DEB_CACHE)/busybox-static
	rm -rf $(DEB_CACHE)/busybox-static.tmp

$(E2FSPROGS_ARM64):
	rm -rf $@.tmp && mkdir -p $@.tmp/debs
	cd $@.tmp/debs && apt-get download $(addsuffix :arm64,$(E2FSPROGS_ARM64_DEBS))
	for deb in $@.tmp/debs/*.deb; do dpkg-deb -x "$$deb" $@.tmp/root || exit 1; done
	rm -rf $@ && mv $@.tmp/root $@ && rm -rf $@.tmp

$(TEST_IMAGE_BUSYBOX): $(BUSYBOX) FORCE
	rm -rf $@ && $(GO) run ./testsuite/cmd/mkimage -image busybox -o $@ -tag test

$(SPORE_ARM64): $(GUEST_INITRD) FORCE
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o $@ ./cmd/spore

$(TEST_ROOTFS): $(BUSYBOX) testsuite/e2e/testdata/mkrootfs.sh
	sh testsuite/e2e/testdata/mkrootfs.sh $(BUSYBOX) $@

vm/testdata/%.arm64: FORCE
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o $@ ./vm/testdata/$*

FORCE:

vet: $(GUEST_INITRD)
	$(GO) vet ./...

test: vet unit e2e

# Unit tests run natively; tests that need KVM skip themselves here unless
# this host can run arm64 guests.
unit: $(GUEST_INITRD)
	$(GO) test -timeout 15m ./...

E2E_ENV := SPORE_TEST_KERNEL=$(GUEST_KERNEL) SPORE_KERNEL=$(GUEST_KERNEL) SPORE_BUSYBOX=$(BUSYBOX) SPORE_TEST_SPORE=$(SPORE_ARM64) SPORE_TEST_ROOTFS=$(TEST_ROOTFS) \
	SPORE_TEST_IMAGE_BUSYBOX=$(TEST_IMAGE_BUSYBOX)

ifeq ($(NATIVE_KVM),yes)
e2e: $(GUEST_TEST_BINARIES) $(GUEST_INITRD) $(BUSYBOX) $(SPORE_ARM64) $(TEST_ROOTFS) $(TEST_IMAGE_BUSYBOX)
	$(E2E_ENV) $(GO) test -timeout $(E2E_TIMEOUT) $(E2E_PKGS)
else
e2e: testbed-exec $(GUEST_TEST_BINARIES) $(GUEST_INITRD) $(BUSYBOX) $(SPORE_ARM64) $(TEST_ROOTFS) $(TEST_IMAGE_BUSYBOX) $(E2FSPROGS_ARM64)
	$(E2E_ENV) SPORE_E2FSPROGS=$(E2FSPROGS_ARM64) \
		SPORE_TESTBED_FILES=$(GUEST_KERNEL):$(BUSYBOX):$(SPORE_ARM64):$(TEST_ROOTFS):$(TEST_IMAGE_BUSYBOX):$(E2FSPROGS_ARM64) \
		GOARCH=arm64 $(GO) test -exec $(BIN)/testbed-exec -timeout $(E2E_TIMEOUT) $(E2E_PKGS)
endif

testbed-exec:
	$(GO) build -o $(BIN)/testbed-exec ./testsuite/cmd/testbed-exec

# The demo runs the main job on the embedded defaults: boot and warm a
# guest, capture it, resume the commit, capture a child, show the history.
# On hosts that cannot run arm64 guests it runs inside the testbed.
DEMO_ARM64 := $(BIN)/demo-arm64

demo: build testbed-exec $(SPORE_ARM64) $(GUEST_INITRD) $(BUSYBOX)
	$(BIN)/spore version
ifeq ($(NATIVE_KVM),yes)
	$(GO) build -o $(BIN)/demo ./testsuite/cmd/demo
	SPORE_DEMO_SPORE=$(BIN)/spore $(BIN)/demo
else
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o $(DEMO_ARM64) ./testsuite/cmd/demo
	SPORE_DEMO_SPORE=$(SPORE_ARM64) SPORE_KERNEL=$(GUEST_KERNEL) SPORE_BUSYBOX=$(BUSYBOX) \
		SPORE_TESTBED_FILES=$(GUEST_KERNEL):$(BUSYBOX):$(SPORE_ARM64) $(BIN)/testbed-exec $(DEMO_ARM64)
endif

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

install: build
	install -d $(BINDIR) $(SHAREDIR)/kernel $(SHAREDIR)/busybox
	install -m 0755 $(BIN)/spore $(BINDIR)/spore
	install -m 0644 $(GUEST_KERNEL) $(SHAREDIR)/kernel/Image
	install -m 0755 $(BUSYBOX) $(SHAREDIR)/busybox/busybox

clean:
	rm -rf $(BIN) share $(GUEST_TEST_BINARIES)
