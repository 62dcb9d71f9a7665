"""The emulated scanners, in one place: which Debian release, Python, system numpy, stand-in package and CPU.

A target's numpy is the version of Debian's `python3-numpy`, which Raspberry Pi OS's picamera2 helpers are built
against; the device lock is resolved against it, and the root build checks that the packages still carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_sca.devpaths import REPO_ROOT

DATA_DIR = REPO_ROOT / "data" / "pi-target"
REPORT_DIR = REPO_ROOT / "reports" / "pi-check"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: What every root holds besides the stand-in: the Pi's Python with venv/ensurepip, apt's numpy, the C++ runtime
#: that opencv and LiteRT wheels link against, the shell + coreutils that install.sh runs with, and the CA bundle
#: (trixie's pip loads it on import; every Raspberry Pi OS image has it).
BASE_PACKAGES = ("base-files", "dash", "coreutils", "ca-certificates", "python3", "python3-venv", "python3-numpy",
                 "libstdc++6")


@dataclass(frozen=True)
class Cpu:
    """A Raspberry Pi's cores as the emulator presents them: qemu's CPU model plus the board's /proc/cpuinfo."""

    key: str
    qemu: str  # QEMU_CPU
    board: str
    part: str  # MIDR part number: cpuinfo (XNNPACK's CPU detection) picks kernels by it
    variant: str
    revision: str
    features: str

    def cpuinfo(self, cores: int = 4) -> str:
        """A /proc/cpuinfo in the Pi's own format. qemu-user would otherwise hand the guest the host's x86 one,
        XNNPACK would find no Arm cores, and LiteRT would crash."""
        blocks = [f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {self.features}\nCPU implementer\t: 0x41\n"
                  f"CPU architecture: 8\nCPU variant\t: {self.variant}\nCPU part\t: {self.part}\n"
                  f"CPU revision\t: {self.revision}\n" for n in range(cores)]
        return "\n".join(blocks) + f"\nModel\t\t: {self.board} (emulated by qemu-user -cpu {self.qemu})\n"


CPUS = {
    "pi4": Cpu("pi4", "cortex-a72", "Raspberry Pi 4 Model B", "0xd08", "0x0", "3",
               "fp asimd evtstrm crc32 cpuid"),
    "pi5": Cpu("pi5", "cortex-a76", "Raspberry Pi 5 Model B", "0xd0b", "0x4", "1",
               "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
}


@dataclass(frozen=True)
class Target:
    """One Raspberry Pi OS release, built from Debian's arm64 packages of the same suite."""

    name: str
    python: str  # the system Python, major.minor
    numpy: str  # Debian's python3-numpy upstream version (the lock is resolved against it)
    glibc: tuple[int, int]  # newest manylinux tag the target can load
    stand_in: str  # Debian package with a compiled numpy-C-API extension, standing in for apt's picamera2 stack
    stand_in_module: str
    control_numpy: str | None  # a venv numpy that must break the stand-in (the negative control); None: none exists

    @property
    def tag(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def packages(self) -> tuple[str, ...]:
        return (*BASE_PACKAGES, self.stand_in)

    @property
    def sources(self) -> list[str]:
        opt = f"[signed-by={KEYRING}]"
        return [f"deb {opt} {MIRROR} {self.name} main", f"deb {opt} {MIRROR} {self.name}-updates main",
                f"deb {opt} {SECURITY_MIRROR} {self.name}-security main"]

    @property
    def data_dir(self) -> Path:
        return DATA_DIR / self.name

    @property
    def root(self) -> Path:
        return self.data_dir / "root"


#: picamera2's simplejpeg is in neither Debian release. python3-cftime (160 kB) is the smallest arm64 package whose
#: extension, like simplejpeg's, is Cython with `cimport numpy`, built against the release's own numpy (bookworm:
#: numpy 1.x, Depends python3-numpy-abi9): with another numpy in the venv it fails exactly as simplejpeg does
#: ("numpy.dtype size changed"). Bigger numpy-extension packages (scipy, h5py) add tens of MB for no more proof.
#: The negative control on trixie has no numpy to use: PyPI's numpy wheels for Python 3.13 are all 2.x, which
#: extensions built against numpy 2.2 accept (numpy 2's C ABI is backward compatible).
TARGETS = {
    "bookworm": Target("bookworm", "3.11", "1.24.2", (2, 36), "python3-cftime", "cftime", "numpy>=2,<3"),
    "trixie": Target("trixie", "3.13", "2.2.4", (2, 41), "python3-cftime", "cftime", None),
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        from pi_target.errors import PiTargetError

        raise PiTargetError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None


def get_cpu(key: str) -> Cpu:
    try:
        return CPUS[key]
    except KeyError:
        from pi_target.errors import PiTargetError

        raise PiTargetError(f"unknown CPU {key!r}; choose one of {', '.join(CPUS)}") from None
