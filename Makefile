# SPDX-License-Identifier: GPL-2.0
# fuse-adio: out-of-tree fuse.ko with the async direct IO series applied.
#
#   make              stage fs/fuse from KSRC into fs-fuse/, apply
#                     patches/series, build fs-fuse/fuse.ko against KDIR
#   make stock        the unpatched fuse.ko (fs-fuse-stock/), for A/B runs
#   make check        everything: deps, debug kernel, module, patch hygiene,
#                     server and selftests on the host and in the guest
#   make check-stock  the selftests against the stock module: shows which
#                     gaps the series closes (expected to fail)
#   make bench        the benchmark (perf kernel, stock vs patched)
#   make patches-check  checkpatch --strict and a build after each patch
#   make kernel [FLAVOUR=debug|perf]  build (once) a test kernel
#   make vm CMD='...' [FLAVOUR=..] [MODULE=..]  run a command in the guest
#   make dkms-tarball [KVER=..|KDIR=..]  DKMS source tarball of the patched
#                     fuse for a target kernel (default: the running one)
#   make dkms-check   the DKMS package built, installed and loaded (guest)
#
# Knobs: BASE=7.3|6.12 (the kernel base: mainline, patches/, or the 6.12
# backport, patches/6.12/; default 7.3, and make check runs both when
# neither BASE nor KSRC is given), KSRC (kernel source tree or tarball,
# default Debian's /usr/src/linux-source-$(BASE).tar.xz; its version picks
# the base), KDIR (kernel build tree, default the project's debug test
# kernel of the base), FUSE_ADIO_CACHE (default
# ~/.cache/fuse-adio), FUSE_ADIO_ACCEL=kvm to use KVM on real hardware.

BASE ?=
KSRC ?=
KDIR ?=
KVER ?=
FLAVOUR ?= debug
MODULE ?= patched
CMD ?= sh
export BASE KSRC KDIR KVER

S := $(CURDIR)/scripts

.PHONY: all module stock kernel kernels deps selftests server tools \
	patches-check check check-stock bench vm dkms-tarball dkms-check \
	clean distclean help

all: module

module:
	@$(S)/build-module

stock:
	@$(S)/build-module --stock

kernel:
	@$(S)/build-kernel $(FLAVOUR)

kernels:
	@$(S)/build-kernel debug
	@$(S)/build-kernel perf

deps:
	@$(S)/install-deps

# Userspace parts; the selftests use the harness and lib.mk of KSRC.
selftests:
	@$(S)/build-userspace selftests

server:
	@$(S)/build-userspace server

tools:
	@$(S)/build-userspace tools

patches-check:
	@$(S)/patches-check

check:
	@$(S)/check

check-stock:
	@$(S)/check --module stock

bench:
	@$(S)/bench

dkms-tarball:
	@$(S)/dkms-tarball

dkms-check:
	@$(S)/dkms-check

vm:
	@$(S)/vm-run --kernel $(FLAVOUR) --module $(MODULE) -- sh -c '$(CMD)'

clean:
	rm -rf fs-fuse fs-fuse-stock .patches-check dist modules.order Module.symvers \
		.modules.order.cmd .Module.symvers.cmd
	-$(MAKE) -C userspace-server clean
	-$(MAKE) -C bench/aio-stress clean
	-$(MAKE) -C bench/host-noise clean
	-$(MAKE) -C selftests clean

distclean: clean
	rm -rf logs

help:
	@sed -n '2,25p' Makefile | sed 's/^# \{0,1\}//'
