"""Data protection: job data fields that look like credentials are encrypted at rest.

A field is sensitive when its name contains one of `security.sensitiveFields` as whole
words (`apiKey`, `openai_api_key` and `X-Api-Key` all contain "api key"; `maxTokens` does
not contain "token"). Its value, whatever JSON it is, is replaced in Redis, in recurring
definitions and in the history database by `{"$vq:encrypted": "<Fernet token>"}`. Only
the handler (`unseal` in the worker) and the job's owner over the API see it again; every
other view shows "[redacted]" (`redact`).

Keys: `security.encryptionKey` or $VQ_ENCRYPTION_KEY, comma-separated, newest first (older
ones still decrypt, so keys can be rotated); else one generated into the data directory.
Several hosts must share one key, like the JWT secret.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from vq.config import Settings
from vq.errors import InvalidInput, PermanentError
from vq.secretfile import read_or_create

MARK = "$vq:encrypted"
REDACTED = "[redacted]"
KEY_FILE = "encryption.key"
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def words(name: str) -> tuple[str, ...]:
    """A field name as lower-case words: "openaiApiKey" -> ("openai", "api", "key")."""
    return tuple(w.lower() for w in _WORD.findall(name))


def _contains(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


class Protector:
    """The sensitive-field rule and the keys of one configuration."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.patterns = [words(p) for p in settings.security.sensitiveFields]
        self._fernet = None
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
                raise PermanentError(f"{path}: cannot be decrypted with the configured keys "
                                     "(security.encryptionKey)") from None
        return _map(data, lambda _key, value: _is_sealed(value), decrypt)


def redact(data: Any) -> Any:
    """`data` as everyone but the handler and the owner sees it: encrypted values as "[redacted]"."""
    return _map(data, lambda _key, value: _is_sealed(value), lambda _value, _path: REDACTED)


def _map(data: Any, chosen, change, path: str = "data") -> Any:
    """A copy of `data` with `change(value, path)` applied where `chosen(key, value)`."""
    if isinstance(data, dict):
        return {key: change(value, f"{path}.{key}") if chosen(key, value) else _map(value, chosen, change,
                                                                                     f"{path}.{key}")
                for key, value in data.items()}
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
