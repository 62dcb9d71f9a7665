"""What machine the numbers came from, and the peak multiply-accumulate rate its vector unit could reach.

The peak is a stated model, not a measurement: cores x clock x MACs per cycle per core, where MACs per cycle
follow from the widest vector instructions the CPU advertises in /proc/cpuinfo (x86 `flags`, Arm `Features`).
It is an upper bound: it assumes every cycle issues the best instruction on every vector pipe, no memory stalls.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

#: Arm "CPU part" codes of the cores the scanner may run on.
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710"}


@dataclass(frozen=True)
class VectorUnit:
    """The vector unit model behind the peak: MACs per cycle per core for int8 and float32, and why."""

    name: str
    int8_macs_per_cycle: int
    float32_macs_per_cycle: int
    assumption: str


def _flag_set(cpuinfo: str) -> set[str]:
    """The first `flags` (x86) or `Features` (Arm) line as a set."""
    m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    return set(m.group(1).split()) if m else set()


def vector_unit(cpuinfo: str, machine: str | None = None) -> VectorUnit:
    """Classify the vector unit from cpuinfo text; `machine` (platform.machine()) breaks ties when flags are absent."""
    flags = _flag_set(cpuinfo)
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return VectorUnit("x86 AVX-512 VNNI", 2 * 16 * 4, 2 * 16,
                          "2 x 512-bit FMA pipes; int8: VPDPBUSD = 16 lanes x 4 int8 MACs; float32: 16-lane FMA. "
                          "Cores that split 512-bit ops into two 256-bit halves (e.g. AMD Zen 4) reach half")
    if "avx512f" in flags:
        return VectorUnit("x86 AVX-512", 2 * 32, 2 * 16,
                          "2 x 512-bit FMA pipes; int8: VPMADDUBSW = 32 products per op (then an add); float32: "
                          "16-lane FMA")
    if "avx_vnni" in flags:
        return VectorUnit("x86 AVX2 + AVX-VNNI", 2 * 8 * 4, 2 * 8,
                          "2 x 256-bit pipes; int8: VPDPBUSD ymm = 8 lanes x 4 int8 MACs; float32: 8-lane FMA")
    if "avx2" in flags:
        return VectorUnit("x86 AVX2", 2 * 16, 2 * 8,
                          "2 x 256-bit pipes; int8: VPMADDUBSW ymm = 16 pairs per op net of the extra add; "
                          "float32: 8-lane FMA (needs `fma`)")
    if "i8mm" in flags:
        return VectorUnit("Arm NEON + i8mm (SMMLA)", 2 * 32, 2 * 4,
                          "2 x 128-bit NEON pipes; int8: SMMLA = 32 int8 MACs; float32: 4-lane FMLA")
    if "asimddp" in flags:
        return VectorUnit("Arm NEON + dot product (SDOT)", 2 * 16, 2 * 4,
                          "2 x 128-bit NEON pipes; int8: SDOT = 4 lanes x 4 int8 MACs; float32: 4-lane FMLA")
    if "asimd" in flags or (not flags and (machine or "").lower() in ("aarch64", "arm64")):
        return VectorUnit("Arm NEON (no int8 dot product)", 2 * 8, 2 * 4,
                          "2 x 128-bit NEON pipes; int8: SMLAL/SMLAL2 = 8 widening int8 MACs per op; "
                          "float32: 4-lane FMLA")
    if "sse4_1" in flags or "sse2" in flags or (machine or "").lower() in ("x86_64", "amd64"):
        return VectorUnit("x86 SSE", 2 * 8, 2 * 4,
                          "2 x 128-bit pipes; int8: PMADDUBSW = 8 pairs per op net of the add; float32: 4 lanes")
    return VectorUnit("unknown", 0, 0, "vector unit not recognised from cpuinfo flags: no peak estimate")


def cpu_model(cpuinfo: str) -> str:
    """A readable CPU name: x86 `model name`, else the board model plus the Arm core name."""
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    if m and not m.group(1).strip().startswith("ARMv"):
        return m.group(1).strip()
    parts = re.findall(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", cpuinfo, re.MULTILINE)
    core = ARM_PARTS.get(parts[0].lower(), f"Arm part {parts[0]}") if parts else ""
    board = re.search(r"^Model\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    name = " / ".join(x for x in (board.group(1).strip() if board else "", core) if x)
    return name or platform.processor() or platform.machine() or "unknown"


def clock_ghz(cpuinfo: str, sysfs: Path = Path("/sys/devices/system/cpu/cpu0/cpufreq")) -> tuple[float | None, str]:
    """The core clock in GHz and where it came from: cpufreq max (Pi), else cpuinfo MHz, else the model name."""
    try:
        return int((sysfs / "cpuinfo_max_freq").read_text()) / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)
    if m:
        return float(m.group(1)) / 1e3, "/proc/cpuinfo cpu MHz"
    m = re.search(r"@\s*([\d.]+)\s*GHz", cpuinfo)
    if m:
        return float(m.group(1)), "model name"
    return None, "unknown"


def usable_cores() -> int:
    """Cores this process may run on (affinity), which is what LiteRT's threads can use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def peak_macs_per_s(unit: VectorUnit, cores: int, ghz: float | None, dtype: str) -> float | None:
    """cores x clock x MACs per cycle for `dtype` (int8 or float32); None when the clock or unit is unknown."""
    per_cycle = unit.int8_macs_per_cycle if dtype in ("int8", "uint8") else unit.float32_macs_per_cycle
    if not ghz or not per_cycle:
        return None
    return cores * ghz * 1e9 * per_cycle


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info(cpuinfo: str | None = None, clock_override: float | None = None) -> dict:
    """The machine block of the report: CPU, cores, clock, vector unit, OS, Python and library versions."""
    import numpy as np

    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    ghz, source = (clock_override, "--clock-ghz") if clock_override else clock_ghz(text)
    unit = vector_unit(text, platform.machine())
    board = Path("/proc/device-tree/model")
    return {
        "hostname": platform.node(), "cpu_model": cpu_model(text), "arch": platform.machine(),
        "cores": usable_cores(), "cores_total": os.cpu_count(), "clock_ghz": ghz, "clock_source": source,
        "board": board.read_text(errors="replace").strip("\x00\n ") if board.exists() else None,
        "vector_unit": asdict(unit),
        "os": f"{platform.system()} {platform.release()}", "os_pretty": _os_pretty(),
        "python": sys.version.split()[0], "numpy": np.__version__,
        "litert": _version("ai-edge-litert"), "opencv": _version("opencv-python-headless") or _version("opencv-python"),
        "load_average": _load_average(), "emulated": emulation(text),
    }


def _load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):  # no /proc (a chroot) or no such call
        return None


def emulation(cpuinfo: str) -> str | None:
    """How this process is emulated (qemu-user sets QEMU_CPU / QEMU_LD_PREFIX for its guest; the emulated Pi
    target's cpuinfo says so too), or None on real hardware: emulated timings are not device figures."""
    for var in ("QEMU_CPU", "QEMU_LD_PREFIX"):
        if os.environ.get(var):
            return f"qemu-user ({var}={os.environ[var]})"
    m = re.search(r"emulated by ([^)\n]+)", cpuinfo)
    return m.group(1).strip() if m else None


def _os_pretty() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return None
