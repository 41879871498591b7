"""API keys: named, scoped, per tenant, stored as digests in ``<data_dir>/keys.json``.

A key looks like ``fay_<id>_<secret>``: ``id`` (16 hex digits) names it in ``fay keys list`` and in logs, the
secret is 32 random bytes (URL-safe base64). The whole key is shown once, when it is created; the store keeps
only its SHA-256 digest. A plain (unsalted, fast) hash is enough here: the secret has 256 random bits, so there
is nothing to guess or to look up in a table, unlike a password. A key is found by its id and its digest
compared with :func:`hmac.compare_digest` (constant time).

Each key has a ``name`` (who holds it), a ``tenant`` (see :mod:`fay_core.tenancy`), ``scopes`` from
:data:`SCOPES` (``chat``: personas, sessions, messages, WebRTC; ``admin``: the tenant's sessions and their audit
records; ``ingest``: the tenant's knowledge collections), its creation and revocation times, and optionally its
own rate limits (``keys.*`` settings otherwise).

The file is written atomically (a temporary file, ``fsync``, rename) with mode 0600, under a lock file so that two
``fay keys`` commands do not lose each other's change. A running server checks the file's identity (inode, size,
modification time) on every lookup and reads it again when it changed, so ``fay keys revoke`` takes effect at
once. Keys are never deleted, only revoked: a store whose keys are all revoked still requires keys.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import ConfigError, KeyStoreUnavailable
from .tenancy import DEFAULT_TENANT, TENANT_PATTERN, is_tenant

log = logging.getLogger(__name__)

Scope = Literal["chat", "admin", "ingest"]
#: every scope a key may have
SCOPES: tuple[Scope, ...] = get_args(Scope)
PREFIX = "fay_"
FILE_NAME = "keys.json"
_VERSION = 1


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a tenant, the scopes it holds, and the key it came with (``None``: the shared
    ``server.token`` or an open server)."""

    tenant: str = DEFAULT_TENANT
    scopes: frozenset[Scope] = frozenset(SCOPES)
    key_id: str | None = None
    #: the key's own rate limits, if it has them
    sessions_per_minute: int | None = None
    messages_per_minute: int | None = None


#: the principal of an open server and of the shared ``server.token``
OPERATOR = Principal()


@dataclass(frozen=True)
class ApiKey:
    """One key's record (never its secret)."""

    id: str
    name: str
    tenant: str
    scopes: tuple[Scope, ...]
    digest: str  # hex SHA-256 of the whole key
    created: str
    revoked: str | None = None
    sessions_per_minute: int | None = None
    messages_per_minute: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def principal(self) -> Principal:
        return Principal(self.tenant, frozenset(self.scopes), self.id, self.sessions_per_minute,
                         self.messages_per_minute)

    def public(self) -> dict[str, Any]:
        """What ``fay keys list`` shows: everything but the digest."""
        out = asdict(self)
        del out["digest"]
        out["scopes"] = list(self.scopes)
        return out


def _parse(text: str, path: Path) -> dict[str, ApiKey]:
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(data.get("keys"), list):
            raise ValueError(f"not a version {_VERSION} key store")
        keys: dict[str, ApiKey] = {}
        for raw in data["keys"]:
            key = ApiKey(**{**raw, "scopes": tuple(raw["scopes"])})
            bad = set(key.scopes) - set(SCOPES)
            if bad or not is_tenant(key.tenant) or len(key.digest) != 64:
                raise ValueError(f"key {key.id}: bad scopes, tenant or digest")
            keys[key.id] = key
        return keys
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"key store {path} is malformed ({exc}): restore it from a backup, or move it aside "
                          "and create keys again with `fay keys create`") from None


class KeyStore:
    """The API keys of ``<data_dir>/keys.json``. Thread-safe; reads the file again whenever it changed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, ApiKey] = {}

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> KeyStore:
        return cls(Path(data_dir) / FILE_NAME)

    # --- reading ----------------------------------------------------------------------------------------

    def keys(self) -> dict[str, ApiKey]:
        """Every key by id, as the file holds them now (revoked ones too).

        Raises :class:`~fay_core.errors.ConfigError` if the file is malformed or unreadable.
        """
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._stamp, self._keys = None, {}
                return self._keys
            except OSError as exc:
                raise ConfigError(f"key store {self.path} cannot be read: {exc}") from None
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp != self._stamp:
                if st.st_mode & 0o077:
                    log.warning("key store %s is readable by others (mode %o): chmod 600 it", self.path,
                                st.st_mode & 0o777)
                try:
                    text = self.path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"key store {self.path} cannot be read: {exc}") from None
                self._keys = _parse(text, self.path)
                self._stamp = stamp
            return self._keys

    def required(self) -> bool:
        """Whether keys exist (revoked ones count): then ``/api/*`` requires a key (or ``server.token``)."""
        return bool(self.keys())

    def verify(self, key: str) -> ApiKey | None:
        """The record of ``key`` if it is one of this store's keys (revoked or not), else ``None``.

        Raises :class:`~fay_core.errors.KeyStoreUnavailable` if the store cannot be read (logged).
        """
        try:
            keys = self.keys()
        except ConfigError as exc:
            log.error("%s: every API key is refused until it is fixed", exc)
            raise KeyStoreUnavailable(str(exc)) from None
        key_id = _key_id(key)
        record = keys.get(key_id) if key_id is not None else None
        expected = bytes.fromhex(record.digest) if record is not None else bytes(32)
        matches = hmac.compare_digest(_digest(key), expected)  # compared even for an unknown id
        return record if record is not None and matches else None

    # --- writing ----------------------------------------------------------------------------------------

    def create(self, *, name: str, tenant: str, scopes: tuple[Scope, ...] | list[Scope] = ("chat",),
               sessions_per_minute: int | None = None, messages_per_minute: int | None = None
               ) -> tuple[ApiKey, str]:
        """Create a key; return its record and the key itself (shown once: the store keeps only its digest)."""
        if not is_tenant(tenant):
            raise ConfigError(f"tenant {tenant!r} is not a tenant name ({TENANT_PATTERN}: 1-24 lowercase letters, "
                              "digits and '-')")
        if not name.strip():
            raise ConfigError("a key needs a name (who holds it, e.g. 'branch-42 kiosk')")
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ConfigError(f"scopes must be some of {', '.join(SCOPES)} (got {', '.join(bad) or 'none'})")
        for limit in (sessions_per_minute, messages_per_minute):
            if limit is not None and limit <= 0:
                raise ConfigError("a per-minute limit must be a positive number")
        key_id = secrets.token_hex(8)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(id=key_id, name=name.strip(), tenant=tenant, scopes=tuple(dict.fromkeys(scopes)),
                        digest=_digest(key).hex(), created=_now(), sessions_per_minute=sessions_per_minute,
                        messages_per_minute=messages_per_minute)
        with self._editing() as keys:
            keys[key_id] = record
        return record, key

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke key ``key_id`` (idempotent: a revoked key keeps its first revocation time)."""
        with self._editing() as keys:
            record = keys.get(key_id)
            if record is None:
                raise ConfigError(f"no key {key_id!r} (see `fay keys list`)")
            if record.active:
                record = keys[key_id] = ApiKey(**{**asdict(record), "revoked": _now()})
        return record

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, ApiKey]]:
        """The keys, to change in place; written back atomically, under the store's lock file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            keys = dict(self.keys())
            yield keys
            self._write(keys)
        finally:
            os.close(lock_fd)  # releases the lock

    def _write(self, keys: dict[str, ApiKey]) -> None:
        data = {"version": _VERSION, "keys": [{**asdict(k), "scopes": list(k.scopes)} for k in keys.values()]}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, ensure_ascii=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _key_id(key: str) -> str | None:
    """The id of a key shaped ``fay_<id>_<secret>``, else ``None``."""
    if not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX):].partition("_")
    return key_id if sep and key_id and secret else None
