"""Ed25519 keys and signatures for deploy bundles (via `cryptography`).

The private key stays on the workstation (PEM, file mode 0600); the public key goes on the scanner
(/etc/cancernet-sca/bundle-signing.pub), which then installs only bundles signed by that key.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_sca.fileio import atomic_open, atomic_write_bytes
from firmware_bridge.errors import BundleError

DEFAULT_KEY = Path("keys/bundle-signing.key")


def public_path(private_path: str | Path) -> Path:
    p = Path(private_path)
    return p.with_suffix(".pub")


def keygen(private_path: str | Path = DEFAULT_KEY, force: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: PRIVATE (0600) and PRIVATE with .pub; refuses to overwrite unless force."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    priv, pub = Path(private_path), public_path(private_path)
    if priv.exists() and not force:
        raise BundleError(f"{priv} exists; scanners trust its public key, so it is kept. Pass --force to replace "
                          f"it (then put the new {pub} on every scanner)")
    priv.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with atomic_open(priv, mode=0o600) as f:  # 0600 from the first byte, whatever the umask
        f.write(pem)
    atomic_write_bytes(pub, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def load_private(path: str | Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise BundleError(f"signing key {path} not found; make one with `make keygen`") from exc
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path} is not an unencrypted PEM private key ({exc}); make one with `make keygen`") \
            from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 key; make one with `make keygen`")
    if os.stat(path).st_mode & 0o077:
        raise BundleError(f"signing key {path} is readable by other users; `chmod 600 {path}`")
    return key


def load_public(path: str | Path):
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(f"public key {path} not found; it is the .pub file `make keygen` wrote") from exc
    except OSError as exc:
        raise BundleError(f"cannot read public key {path} ({exc.strerror})") from exc
    return load_public_bytes(data, path)


def load_public_bytes(data: bytes, where: str | Path):
    """The Ed25519 public key in PEM DATA; BundleError naming WHERE otherwise."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:  # the scanner's system Python, before its venv exists
        raise BundleError("this Python lacks the `cryptography` package needed to check bundle signatures; on "
                          "the scanner: `sudo apt install python3-cryptography`") from exc

    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise BundleError(f"{where} is not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{where} is not an Ed25519 public key")
    return key


def sign(private_path: str | Path, data: bytes) -> bytes:
    return load_private(private_path).sign(data)


def verify(public_path_: str | Path, data: bytes, signature: bytes) -> None:
    """BundleError unless signature is PUBLIC's signature of data."""
    key = load_public(public_path_)
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, data)
    except InvalidSignature as exc:
        raise BundleError(f"bad signature: the bundle's file list was not signed by the key {public_path_} "
                          f"(tampered with, or signed with another key)") from exc
