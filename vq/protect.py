"""Data protection: job data fields that look like credentials are encrypted at rest.

A field is sensitive when its name contains one of `security.sensitiveFields` as whole
words (`apiKey`, `openai_api_key` and `X-Api-Key` all contain "api key"; `maxTokens` does
not contain "token"). Its value, whatever JSON it is, is replaced in Redis, in recurring
definitions and in the history database by `{"$vq:encrypted": "<Fernet token>"}`. Only
the handler (`unseal` in the worker) and the job's owner over the API see it again; every
other view shows "[redacted]" (`redact`).

Keys: `security.encryptionKey` or $VQ_ENCRYPTION_KEY, comma-separated, newest first (older
ones still decrypt, so keys can be rotated); else one generated into the data directory.
Several hosts must share one key, like the JWT secret. Daemons publish their keys'
fingerprints (a short SHA-256, never a key) with their presence; a submitter whose key no
live daemon has refuses to submit sensitive data (`check_daemons_open`), naming both keys'
places, instead of making a job that fails for good when it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

from vq.config import Settings
from vq.errors import InvalidInput, KeyMismatch, PermanentError
from vq.secretfile import read_or_create

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

MARK = "$vq:encrypted"
REDACTED = "[redacted]"
KEY_FILE = "encryption.key"
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
DAEMON_KEYS_FOR = 5.0  # s a submitter keeps what the daemons published before reading it again


def words(name: str) -> tuple[str, ...]:
    """A field name as lower-case words: "openaiApiKey" -> ("openai", "api", "key")."""
    return tuple(w.lower() for w in _WORD.findall(name))


def _contains(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


class Protector:
    """The sensitive-field rule and the keys of one configuration."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.patterns = [words(p) for p in settings.security.sensitiveFields]
        self._fernet: MultiFernet | None = None
        self._fingerprints: list[str] | None = None
        self._daemon_keys: tuple[float, list[dict]] = (0.0, [])
        self._verdicts: dict[str, bool] = {}  # field names repeat from job to job: match each once

    def is_sensitive(self, name: str) -> bool:
        verdict = self._verdicts.get(name)
        if verdict is None:
            own = words(name)
            verdict = any(_contains(own, p) for p in self.patterns)
            if len(self._verdicts) < 10_000:
                self._verdicts[name] = verdict
        return verdict

    @property
    def fernet(self):
        if self._fernet is None:
            from cryptography.fernet import Fernet, MultiFernet

            self._fernet = MultiFernet([Fernet(k) for k in encryption_keys(self.settings)])
        return self._fernet

    @property
    def fingerprints(self) -> list[str]:
        """The keys' fingerprints, newest (the one that encrypts) first."""
        if self._fingerprints is None:
            self._fingerprints = [fingerprint(k) for k in encryption_keys(self.settings)]
        return self._fingerprints

    def published(self) -> dict:
        """What a daemon publishes with its presence: its keys' fingerprints and where its key is."""
        return {"keys": self.fingerprints, "source": key_source(self.settings)}

    def check_daemons_open(self, conn, data: Any, where: str = "data") -> None:
        """Refuse (KeyMismatch) data with a sensitive field when live daemons have published
        their keys and one of them lacks this process's newest key: it could not decrypt the
        field and the job would fail for good at run time. No daemon published yet: allowed."""
        field = next(
            (path for path, key, _v in _walk(data, where) if isinstance(key, str) and self.is_sensitive(key)), None
        )
        if field is None:
            return
        lacking = [d for d in self._published_by_daemons(conn) if self.fingerprints[0] not in d["keys"]]
        if lacking:
            theirs = "; ".join(
                sorted({f"{d['daemon']} (key: {d['source']}, fingerprint {d['keys'][0]})" for d in lacking})
            )
            raise KeyMismatch(
                f"{field} is sensitive and would be encrypted with this host's key ({key_source(self.settings)}, "
                f"fingerprint {self.fingerprints[0]}), which the daemon(s) {theirs} do not have, so the job "
                "could never run: give every host the same key (security.encryptionKey, $VQ_ENCRYPTION_KEY, "
                "or the same data_dir)",
                field=field,
            )

    def _published_by_daemons(self, conn) -> list[dict]:
        from vq import presence

        at, found = self._daemon_keys
        if time.monotonic() - at > DAEMON_KEYS_FOR:
            found = [
                {"daemon": f"{d['host']}:{d['pid']}", **d["encryption"]}
                for d in presence.daemons(conn)
                if d["live"] and d.get("encryption", {}).get("keys")
            ]
            self._daemon_keys = (time.monotonic(), found)
        return found

    def check(self, data: Any, where: str = "data") -> None:
        """Refuse data that already carries vq's encryption mark (it could only be forged)."""
        for path, key, _value in _walk(data, where):
            if key == MARK:
                raise InvalidInput(f"{path}: {MARK!r} is reserved for vq's own encrypted values", field=path)

    def seal(self, data: Any) -> Any:
        """`data` with each sensitive field's value encrypted."""

        def encrypt(value, _path):
            return {MARK: self.fernet.encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()}

        return _map(data, lambda key, _value: isinstance(key, str) and self.is_sensitive(key), encrypt)

    def unseal(self, data: Any, strict: bool = True) -> Any:
        """`data` with encrypted values decrypted, for the handler (`strict`: a value no
        configured key opens fails the job) and the job's owner (it shows "[undecryptable]")."""
        from cryptography.fernet import InvalidToken

        def decrypt(value, path):
            try:
                return json.loads(self.fernet.decrypt(value[MARK].encode()))
            except InvalidToken:
                if not strict:
                    return "[undecryptable]"
                raise PermanentError(
                    f"{path}: cannot be decrypted with the configured keys (security.encryptionKey)"
                ) from None

        return _map(data, lambda _key, value: _is_sealed(value), decrypt)


def redact(data: Any) -> Any:
    """`data` as everyone but the handler and the owner sees it: encrypted values as "[redacted]"."""
    return _map(data, lambda _key, value: _is_sealed(value), lambda _value, _path: REDACTED)


def _map(data: Any, chosen, change, path: str = "data") -> Any:
    """A copy of `data` with `change(value, path)` applied where `chosen(key, value)`."""
    if isinstance(data, dict):
        return {
            key: change(value, f"{path}.{key}") if chosen(key, value) else _map(value, chosen, change, f"{path}.{key}")
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_map(v, chosen, change, f"{path}[{i}]") for i, v in enumerate(data)]
    return data


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(MARK), str)


def _walk(data: Any, path: str):
    if isinstance(data, dict):
        for key, value in data.items():
            yield f"{path}.{key}", key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _walk(value, f"{path}[{i}]")


def fingerprint(key: bytes) -> str:
    """A key's public name: the first 16 hex digits of a SHA-256 of it (never the key)."""
    return hashlib.sha256(b"vq-encryption-key\0" + key).hexdigest()[:16]


def key_source(settings: Settings) -> str:
    """Where this configuration's key comes from, for a line naming it."""
    if settings.security.encryptionKey:
        return "security.encryptionKey"
    if os.environ.get("VQ_ENCRYPTION_KEY"):
        return "$VQ_ENCRYPTION_KEY"
    return str(settings.data_path / KEY_FILE)


def encryption_keys(settings: Settings) -> list[bytes]:
    """The Fernet keys, newest first: config, env, or the data directory's own."""
    configured = settings.security.encryptionKey or os.environ.get("VQ_ENCRYPTION_KEY")
    if configured:
        return [k.strip().encode() for k in configured.split(",") if k.strip()]
    from cryptography.fernet import Fernet

    return [read_or_create(settings.data_path / KEY_FILE, lambda: Fernet.generate_key().decode()).encode()]


_protectors: dict[int, Protector] = {}


def protector(settings: Settings) -> Protector:
    """One Protector per loaded configuration (keys are read once)."""
    found = _protectors.get(id(settings))
    if found is None or found.settings is not settings:
        found = _protectors[id(settings)] = Protector(settings)
    return found
