"""The scanner's own settings: one TOML file, /etc/cancernet-sca/scanner.toml on a scanner, with a documented
default for every key.

What a site may change without rebuilding a model lives here: which model and camera, the board's port and how
long to wait for it, the illumination, the audit log, and the fixed quality-gate limits. What it may not change is
elsewhere: the model contract (edge_sca.contract), the rules thresholds are chosen by (edge_sca.policy) and the
calibrated thresholds themselves (the manifests, models/input_checks.json).

Which file: `--config FILE`, else $CANCERNET_SCA_CONFIG, else /etc/cancernet-sca/scanner.toml when it exists (no
file there: every default). A file that was named but is missing, is not TOML, or holds an unknown key, a wrong
type or a value out of range is refused with a SettingsError (exit status 2, so systemd does not restart into the
same mistake) naming the file, the key and what to do. Command-line options override the file.
`python -m edge_sca settings` shows what the runtime would use and where each value came from.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge_sca.errors import EdgeScaError

ENV_VAR = "CANCERNET_SCA_CONFIG"
#: Where a scanner keeps its settings file (install.sh puts the bundle's config/scanner.toml there when absent).
SCANNER_PATH = Path("/etc/cancernet-sca/scanner.toml")
#: The file read when neither --config nor $CANCERNET_SCA_CONFIG names one (tests point it elsewhere).
DEFAULT_PATH = SCANNER_PATH
HELP = "see docs/deploy.md, section 7, or `python -m edge_sca settings --example`"


class SettingsError(EdgeScaError):
    """A settings file that cannot be used as it is (exit status 2: fix the file, then restart)."""


def _key(doc: str, lo: float | None = None, hi: float | None = None, above: float | None = None,
         choices: tuple[str, ...] = ()) -> dict[str, Any]:
    """Field metadata: the key's documentation and its allowed values (lo <= v <= hi, v > above, v in choices)."""
    return {"doc": doc, "lo": lo, "hi": hi, "above": above, "choices": choices}


@dataclass(frozen=True)
class ModelSettings:
    path: str = field(default="", metadata=_key(
        "int8 .tflite model with its manifest beside it. Empty: cancernet_sca_b_int8.tflite in the models folder "
        "of the checkout (development only)."))
    threads: int = field(default=0, metadata=_key("Interpreter threads; 0: the runtime's choice.", lo=0, hi=64))
    shadow_float: str = field(default="", metadata=_key(
        "float .tflite run beside the model for drift (every shadow_every-th frame); empty: none."))
    shadow_every: int = field(default=10, metadata=_key("N for shadow_float.", lo=1))


@dataclass(frozen=True)
class CameraSettings:
    source: str = field(default="picamera2", metadata=_key(
        "picamera2, opencv:N (USB camera), opencv:PATH (video/image), replay:DIR or synthetic."))
    retries: int = field(default=3, metadata=_key(
        "A failed read of a live camera is retried this many times, with exponential backoff.", lo=0, hi=20))
    backoff_s: float = field(default=0.2, metadata=_key("First wait between retries, in seconds.", above=0, hi=10))
    frozen_frames: int = field(default=5, metadata=_key(
        "This many identical frames in a row from a live camera: the stream is frozen.", lo=2))


@dataclass(frozen=True)
class BoardSettings:
    port: str = field(default="", metadata=_key(
        "Serial port of the dermoscope board (/dev/ttyACM0; /dev/ttyUSB0 for a USB-serial adapter, /dev/serial0 "
        "for the Pi's UART pins): wait for its trigger, set the illumination, show the result. Empty: no board."))
    timeout_s: float = field(default=60.0, metadata=_key(
        "A board that went away is reopened with backoff; after this many seconds without it the runtime exits "
        "with status 3 so that systemd restarts it.", above=0))
    backoff_s: float = field(default=0.25, metadata=_key("First wait before reopening the board, in seconds.",
                                                         above=0, hi=60))
    backoff_max_s: float = field(default=4.0, metadata=_key(
        "The wait doubles up to this many seconds (at least backoff_s).", above=0, hi=600))
    trigger_poll_s: float = field(default=0.5, metadata=_key(
        "One wait for the trigger lasts this long before the loop checks for a stop request.", above=0, hi=10))


@dataclass(frozen=True)
class IlluminationSettings:
    mode: str = field(default="polarised", metadata=_key(
        "What the LED ring does during a capture.", choices=("polarised", "non-polarised")))
    intensity: float = field(default=0.8, metadata=_key("Brightness during a capture, 0 to 1 of full.", above=0,
                                                        hi=1))


@dataclass(frozen=True)
class QualitySettings:
    """The quality gate's fixed limits, on the 224x224 RGB pixels the model sees. Set from 300 random real ISIC
    images (min brightness 98, max white-clipped fraction 0.013 (UDA-1: 2 of 557 above 0.3), min lesion contrast
    17) against degraded copies of them (x0.15 dark: <= 33; x3 overexposed: >= 0.35; plain skin with noise:
    contrast <= 1). The calibrated checks (focus, grayscale, "not a dermoscopy frame") are in
    models/input_checks.json, not here (docs/input-checks.md)."""

    min_brightness: float = field(default=50.0, metadata=_key(
        'Mean luma (0-255) below this: retake, "too dark".', lo=0, hi=255))
    saturation_level: int = field(default=250, metadata=_key(
        "A pixel with every channel at or above this (0-255) is clipped to white.", lo=1, hi=255))
    max_saturated_fraction: float = field(default=0.30, metadata=_key(
        'Fraction of clipped pixels above this: retake, "saturated".', lo=0, hi=1))
    min_lesion_contrast: float = field(default=8.0, metadata=_key(
        "Lesion contrast (median minus 2nd percentile of the blurred luma in the centre) below this: retake, "
        '"no lesion in view".', lo=0, hi=255))
    max_aspect_ratio: float = field(default=2.0, metadata=_key(
        "A frame longer than this many times its width (or wider than its height) is refused: squashing it to "
        "a square distorts the lesion.", lo=1))


@dataclass(frozen=True)
class AuditSettings:
    log: str = field(default="", metadata=_key(
        "Append one JSON line per decision here (fsynced, mode 0640, rotated by size); empty: no audit log."))
    max_bytes: int = field(default=10 * 1024 * 1024, metadata=_key("Size of one audit file before it is rotated.",
                                                                    lo=4096))
    backups: int = field(default=5, metadata=_key("Rotated audit files kept.", lo=1, hi=1000))


SECTIONS: dict[str, type] = {"model": ModelSettings, "camera": CameraSettings, "board": BoardSettings,
                             "illumination": IlluminationSettings, "quality": QualitySettings,
                             "audit": AuditSettings}


@dataclass(frozen=True)
class ScannerSettings:
    """Every setting, by section; `file` is the settings file read (None: none, all defaults) and `origin` says
    where each non-default value came from ('file' or 'command line'), keyed 'section.key'."""

    model: ModelSettings = ModelSettings()
    camera: CameraSettings = CameraSettings()
    board: BoardSettings = BoardSettings()
    illumination: IlluminationSettings = IlluminationSettings()
    quality: QualitySettings = QualitySettings()
    audit: AuditSettings = AuditSettings()
    file: str | None = None
    origin: dict[str, str] = field(default_factory=dict)

    def with_values(self, values: dict[tuple[str, str], Any], origin: str, where: str) -> ScannerSettings:
        """A copy with VALUES ({(section, key): value}) checked and applied; SettingsError naming WHERE if not."""
        sections = {name: getattr(self, name) for name in SECTIONS}
        for (section, key), value in values.items():
            spec = _field(section, key, where)
            sections[section] = replace(sections[section], **{key: _checked(spec, value, f"[{section}] {key}",
                                                                             where)})
        result = replace(self, **sections, origin={**self.origin, **{f"{s}.{k}": origin for s, k in values}})
        _check_together(result, where)
        return result

    def to_dict(self) -> dict:
        return {"file": self.file, **{name: {f.name: getattr(getattr(self, name), f.name)
                                             for f in fields(cls)} for name, cls in SECTIONS.items()},
                "origin": dict(self.origin)}


def _field(section: str, key: str, where: str):
    cls = SECTIONS.get(section)
    if cls is None:
        raise SettingsError(f"{where}: unknown section [{section}]; the sections are {', '.join(SECTIONS)}. Fix "
                            f"its name or remove it ({HELP})")
    by_name = {f.name: f for f in fields(cls)}
    if key not in by_name:
        raise SettingsError(f"{where}: unknown key {key!r} in [{section}]; its keys are {', '.join(by_name)}. Fix "
                            f"its name or remove it ({HELP})")
    return by_name[key]


def _checked(spec, value: Any, name: str, where: str) -> Any:
    """VALUE if it has the key's type and range (an int is accepted for a float key); SettingsError if not."""
    kind, meta, given = spec.type, spec.metadata, value
    fix = f"Fix it or remove the line for the default {_toml(spec.default)} ({HELP})"
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    if not ok:
        noun = {"str": "a string in quotes", "int": "a whole number", "float": "a number"}[kind]
        raise SettingsError(f"{where}: {name} = {_toml(value)} must be {noun}. {fix}")
    if meta["choices"] and value not in meta["choices"]:
        raise SettingsError(f"{where}: {name} = {_toml(value)} is not one of {', '.join(meta['choices'])}. {fix}")
    lo, above, hi = meta["lo"], meta["above"], meta["hi"]
    if (lo is not None and value < lo) or (above is not None and value <= above) or (hi is not None and value > hi):
        allowed = " and ".join(p for p in (f"at least {lo:g}" if lo is not None else "",
                                           f"above {above:g}" if above is not None else "",
                                           f"at most {hi:g}" if hi is not None else "") if p)
        raise SettingsError(f"{where}: {name} = {_toml(given)} is out of range: it must be {allowed}. {fix}")
    return value


def _check_together(s: ScannerSettings, where: str) -> None:
    """Rules between keys, and the camera spec's form (whether that camera is there is known only on opening it)."""
    kind, _, arg = s.camera.source.partition(":")
    if not (kind in ("picamera2", "synthetic") and not arg or kind in ("opencv", "replay") and arg):
        raise SettingsError(f"{where}: [camera] source = {_toml(s.camera.source)} is not a camera: use picamera2, "
                            f"opencv:N, opencv:PATH, replay:DIR or synthetic ({HELP})")
    if s.board.backoff_max_s < s.board.backoff_s:
        raise SettingsError(f"{where}: [board] backoff_max_s = {s.board.backoff_max_s:g} is below backoff_s = "
                            f"{s.board.backoff_s:g}; the wait only grows, so make backoff_max_s at least backoff_s "
                            f"({HELP})")


def settings_path(given: str | Path | None = None) -> tuple[Path, bool]:
    """The settings file to read and whether it must exist: `--config`, $CANCERNET_SCA_CONFIG (both must), else
    DEFAULT_PATH (optional: a development machine has none)."""
    if given:
        return Path(given), True
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env), True
    return DEFAULT_PATH, False


def load_settings(given: str | Path | None = None) -> ScannerSettings:
    """The settings from the file settings_path(GIVEN) names (every default when the optional one is absent)."""
    path, required = settings_path(given)
    if not required and not path.exists():
        return ScannerSettings()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        named = "--config" if given else f"${ENV_VAR}"
        raise SettingsError(f"{path}: settings file not found (named by {named}); check the path, or copy the "
                            f"example: `python -m edge_sca settings --example > {path}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read the settings file ({exc}); check its permissions (it must be "
                            "readable by the cancernet-sca user) and that it is UTF-8 text") from None
    return parse_settings(text, str(path))


def parse_settings(text: str, where: str) -> ScannerSettings:
    """Settings from TOML TEXT; SettingsError naming WHERE on a syntax error, unknown key, wrong type or range."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where}: not valid TOML: {exc}. Fix that line ({HELP})") from None
    values: dict[tuple[str, str], Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise SettingsError(f"{where}: {section} = {_toml(table)} is outside a section; put the keys under "
                                f"[section] headers: {', '.join(f'[{s}]' for s in SECTIONS)} ({HELP})")
        for key, value in table.items():
            _field(section, key, where)
            values[(section, key)] = value
    return ScannerSettings(file=where).with_values(values, "file", where)


def _toml(value: Any) -> str:
    """VALUE as it is written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{...}"
    return json.dumps(value, default=str)


#: What the scanner's own file sets (the rest stays at the defaults, shown commented out): the service's model,
#: board and audit log, which a development machine does not have.
SCANNER_VALUES: dict[tuple[str, str], Any] = {
    ("model", "path"): "/opt/cancernet-sca/current/models/cancernet_sca_b_int8.tflite",
    ("board", "port"): "/dev/ttyACM0",
    ("audit", "log"): "/var/lib/cancernet-sca/audit.jsonl",
}


def render_example(values: dict[tuple[str, str], Any] | None = None) -> str:
    """The documented settings file: every key with its documentation, VALUES set, the others commented out at
    their default (so a later release's new default applies unless the site set the key). The deploy bundle's
    scanner.toml is this with SCANNER_VALUES (tests/test_settings.py checks they agree)."""
    values = SCANNER_VALUES if values is None else values
    header = ("CancerNet-SCa scanner settings (research tool, not a diagnosis), read by `python -m edge_sca run`. "
              f"On a scanner: {SCANNER_PATH}; install.sh puts this file there only when none is there, so a "
              "site's edits survive updates. A line starting with '#key =' shows that key's default: remove the "
              "'#' and change the value to set it. Command-line options override this file. Check an edit with "
              "`python -m edge_sca settings` (it names the key of any mistake), then `sudo systemctl restart "
              "cancernet-sca`. See docs/deploy.md.")
    lines = ["# " + ln for ln in textwrap.wrap(header, 116)]
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]"]
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            lines += ["# " + ln for ln in textwrap.wrap(" ".join(cls.__doc__.split()), 116)]
        for f in fields(cls):
            lines += ["# " + ln for ln in textwrap.wrap(f.metadata["doc"], 116)]
            if (section, f.name) in values:
                lines.append(f"{f.name} = {_toml(values[(section, f.name)])}")
            else:
                lines.append(f"#{f.name} = {_toml(f.default)}")
    return "\n".join(lines) + "\n"


def format_settings(s: ScannerSettings) -> str:
    """The effective settings for people: one 'section.key = value' line each, with where it came from."""
    lines = [f"settings file: {s.file or f'none ({DEFAULT_PATH} absent: defaults)'}"]
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            where = s.origin.get(f"{name}.{f.name}", "default")
            lines.append(f"{name}.{f.name} = {_toml(getattr(getattr(s, name), f.name))}  ({where})")
    return "\n".join(lines)
