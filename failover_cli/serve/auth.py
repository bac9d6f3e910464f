"""Gateway keys: who may use the gateway.

Keys come from ``serve.keys_env`` (an environment variable holding keys separated by commas
or whitespace) and ``serve.keys_file`` (sha256 hex digests, one per line, ``#`` comments).
Only digests are kept in memory; a presented key is hashed and compared with every digest in
constant time (:func:`hmac.compare_digest`, no early exit), so timing tells nothing about
which key is close. A key is identified in logs and rate limits by a short digest prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping

from ..errors import ConfigError
from ..fsutil import read_limited

MAX_KEYS_FILE = 1024 * 1024  # bytes: far more than any list of digests
MAX_KEY = 4096  # characters of a presented key; longer is refused unhashed
_HEX = re.compile(r"[0-9a-f]{64}")


def digest(key: str) -> bytes:
    """The sha256 digest of ``key`` (what a keys file lists, in hex)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


class GatewayKeys:
    """The accepted keys, as digests."""

    __slots__ = ("_digests",)

    def __init__(self, digests: Iterable[bytes]) -> None:
        self._digests = tuple(dict.fromkeys(digests))
        if not self._digests:
            raise ValueError("no gateway keys")

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, presented: str | None) -> str | None:
        """The key's id (a digest prefix) if ``presented`` is an accepted key, else None."""
        if not presented or len(presented) > MAX_KEY:
            return None
        d = digest(presented)
        ok = False
        for known in self._digests:
            ok |= hmac.compare_digest(d, known)
        return d.hex()[:12] if ok else None


def load_keys(
    keys_env: str | None, keys_file: str | None, env: Mapping[str, str]
) -> GatewayKeys | None:
    """The keys configured by ``serve.keys_env`` and ``serve.keys_file``; None when neither
    is set. ConfigError (one line) for an unset or empty variable, or an unreadable or
    malformed file."""
    digests: list[bytes] = []
    if keys_env:
        value = env.get(keys_env)
        keys = [k for k in re.split(r"[\s,]+", value or "") if k]
        if not keys:
            raise ConfigError(f"serve.keys_env: ${keys_env} is not set or holds no key")
        digests += [digest(k) for k in keys]
    if keys_file:
        digests += _read_digests(keys_file)
    return GatewayKeys(digests) if digests else None


def _read_digests(path: str) -> list[bytes]:
    try:
        # Only this user may write it: anyone who could would add a key of their own.
        data = read_limited(path, MAX_KEYS_FILE, owner=os.geteuid(), deny=0o022)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"serve.keys_file: cannot read {path}: {exc}") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"serve.keys_file: {path} is not ASCII text") from None
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if not _HEX.fullmatch(line):
            raise ConfigError(
                f"serve.keys_file: {path}:{number}: expected a sha256 hex digest (64 hex "
                "digits; make one with: printf %s KEY | sha256sum)"
            )
        out.append(bytes.fromhex(line))
    if not out:
        raise ConfigError(f"serve.keys_file: {path} holds no digest")
    return out


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a client sent: ``Authorization: Bearer KEY`` (OpenAI SDKs) or ``x-api-key``
    (Anthropic SDKs)."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None
