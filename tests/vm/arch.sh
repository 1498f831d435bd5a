# Per-architecture settings of the test VM, sourced by tests/vm/build.sh and
# tests/vm/run.sh. VM_ARCH selects the guest:
#
#   x86_64   (default) qemu-system-x86_64 -cpu max, Debian 12 linux-image-*-amd64,
#            the host's own busybox/ip/wg/nft; result via isa-debug-exit.
#   aarch64  qemu-system-aarch64 -M virt -cpu cortex-a53, Debian 12
#            linux-image-6.1.0-N-arm64, console ttyAMA0.
#   mipsel   qemu-system-mipsel -M malta -cpu 24Kc (OpenWrt's mipsel_24kc core),
#            Debian 12 linux-image-6.1.0-N-4kc-malta, console ttyS0, at most
#            256 MiB RAM (the Malta board's limit).
#
# Foreign guests (aarch64, mipsel) take busybox-static, iproute2,
# wireguard-tools and nftables of their architecture from Debian's .debs (apt
# must know the architecture: scripts/install-deps.sh adds arm64 and mipsel)
# and report their result on the serial console only (the line
# "vm: exit status=N"; QEMU then exits 0 through the guest's reset).
#
# Big-endian MIPS (OpenWrt mips_24kc) has no such VM: Debian dropped the `mips`
# architecture after Debian 10, so bookworm has neither a big-endian MIPS
# kernel nor userland (its InRelease lists "all amd64 arm64 armel armhf i386
# mips64el mipsel ppc64el s390x"; `apt-cache pkgnames linux-image` finds only
# the 4kc-malta flavour, built for mipsel). QEMU's malta board itself can run
# big-endian (qemu-system-mips), but the kernel would have to be built from
# source. mips is covered by the cross build and unit tests under qemu-user
# (scripts/build-targets.sh --test).
# shellcheck shell=bash disable=SC2034 # the settings are for the sourcing script

VM_ARCH=${VM_ARCH:-x86_64}
case "$VM_ARCH" in
x86_64)
  DEB_ARCH=amd64
  DEB_MULTIARCH=x86_64-linux-gnu
  KERNEL_RE='^linux-image-6\.1\.0-[0-9]+-amd64$'
  TRIPLE=x86_64-unknown-linux-musl
  # readelf -h: "Machine:" of the agent binary.
  ELF_MACHINE='Advanced Micro Devices X86-64'
  QEMU=${QEMU:-qemu-system-x86_64}
  # -cpu max: TCG then offers RDRAND, so the guest's RNG is ready at once (wg genkey).
  QEMU_MACHINE=(-accel tcg -cpu max -m 256 -device 'isa-debug-exit,iobase=0xf4,iosize=0x04')
  CONSOLE=ttyS0
  QEMU_USER=
  VM_TIMEOUT_DEFAULT=180
  # Historical place of the x86_64 cache (tests 50-52).
  VM_CACHE=$ROOT/target/vm
  ;;
aarch64)
  DEB_ARCH=arm64
  DEB_MULTIARCH=aarch64-linux-gnu
  KERNEL_RE='^linux-image-6\.1\.0-[0-9]+-arm64$'
  TRIPLE=aarch64-unknown-linux-musl
  ELF_MACHINE=AArch64
  QEMU=${QEMU:-qemu-system-aarch64}
  QEMU_MACHINE=(-accel tcg -M virt -cpu cortex-a53 -m 256)
  CONSOLE=ttyAMA0
  QEMU_USER=qemu-aarch64-static
  VM_TIMEOUT_DEFAULT=240
  VM_CACHE=$ROOT/target/vm/aarch64
  ;;
mipsel)
  DEB_ARCH=mipsel
  DEB_MULTIARCH=mipsel-linux-gnu
  KERNEL_RE='^linux-image-6\.1\.0-[0-9]+-4kc-malta$'
  TRIPLE=mipsel-unknown-linux-musl
  ELF_MACHINE='MIPS R3000'
  QEMU=${QEMU:-qemu-system-mipsel}
  QEMU_MACHINE=(-accel tcg -M malta -cpu 24Kc -m 256)
  CONSOLE=ttyS0
  QEMU_USER=qemu-mipsel-static
  VM_TIMEOUT_DEFAULT=240
  VM_CACHE=$ROOT/target/vm/mipsel
  ;;
*)
  echo "vm: unknown VM_ARCH '$VM_ARCH' (x86_64, aarch64 or mipsel)" >&2
  exit 1
  ;;
esac
