"""Who may call what: the principal of each ``/api/*`` request, the scope each endpoint needs, per-key rate limits.

Three modes, chosen by what is configured (checked on every request, so keys created or revoked on a running
server count at once):

==============================  =============================================================================
no ``server.token``, no keys    open, as before keys existed: every request acts for tenant ``default`` with
                                every scope
``server.token`` set, no keys   ``Authorization: Bearer <token>`` is required; it acts for tenant ``default``
                                with every scope
keys exist (see `fay keys`)     a valid, unrevoked API key is required (:mod:`fay_core.keys`); it acts for its
                                tenant with its scopes. ``server.token``, if set, is still accepted as above.
                                Revoked keys count: revoking the last key does not open the server.
==============================  =============================================================================

Refusals: no key, a wrong or a revoked one 401 (:class:`~fay_core.errors.Unauthenticated`); a key without the
scope 403 (:class:`~fay_core.errors.MissingScope`); over the key's per-minute limit 429 with ``Retry-After``
(:class:`~fay_core.errors.RateLimited`). Another tenant's personas and sessions are not refused here: the
endpoints answer them 404, exactly like unknown ones.

Each endpoint declares what it needs with :func:`requires`; an ``/api/*`` endpoint that declares nothing needs
``admin`` (closed by default). The principal is put on the request (:func:`principal`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import SecretStr

from .errors import ConfigError, KeyStoreUnavailable, MissingScope, RateLimited, Unauthenticated
from .http_input import bearer_token
from .keys import OPERATOR, KeyStore, Principal, Scope
from .settings import KeysSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
#: what a rate limit counts: sessions started (HTTP and WebRTC), or messages sent over HTTP
Limit = Literal["sessions", "messages"]


@dataclass(frozen=True, slots=True)
class Rule:
    """What an endpoint needs: a scope, and the rate limit its calls count against (if any)."""

    scope: Scope
    limit: Limit | None = None


#: the rule of an ``/api/*`` endpoint that declares none
DEFAULT_RULE = Rule("admin")
_RULES: dict[Callable[..., Any], Rule] = {}


def requires(scope: Scope, *, limit: Limit | None = None) -> Callable[[H], H]:
    """Declare that an endpoint needs ``scope``, and that its calls count against the key's ``limit``."""

    def declare(handler: H) -> H:
        _RULES[handler] = Rule(scope, limit)
        return handler

    return declare


def rule_of(handler: Callable[..., Any]) -> Rule:
    """The rule ``handler`` declared with :func:`requires`, else :data:`DEFAULT_RULE`."""
    return _RULES.get(handler, DEFAULT_RULE)


class TokenBucket:
    """``per_minute`` calls a minute, in bursts of up to ``per_minute``."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.tokens = float(per_minute)
        self.updated = time.monotonic()

    def take(self) -> float:
        """Take one call: 0 if allowed, else the seconds until one is."""
        now = time.monotonic()
        rate = self.per_minute / 60.0
        self.tokens = min(float(self.per_minute), self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class RateLimiter:
    """A token bucket per key and :data:`Limit`; the key's own limits, else the ``keys`` settings."""

    def __init__(self, settings: KeysSettings) -> None:
        self.settings = settings
        self._buckets: dict[tuple[str, Limit], TokenBucket] = {}

    def per_minute(self, principal: Principal, limit: Limit) -> int:
        if limit == "sessions":
            return principal.sessions_per_minute or self.settings.sessions_per_minute
        return principal.messages_per_minute or self.settings.messages_per_minute

    def take(self, principal: Principal, limit: Limit) -> None:
        """Count one call of ``principal``'s key; raise :class:`~fay_core.errors.RateLimited` if over its limit.
        Requests without a key (open server, ``server.token``) are not limited here."""
        if principal.key_id is None:
            return
        n = self.per_minute(principal, limit)
        bucket = self._buckets.get((principal.key_id, limit))
        if bucket is None or bucket.per_minute != n:
            bucket = self._buckets[(principal.key_id, limit)] = TokenBucket(n)
        wait = bucket.take()
        if wait:
            retry = max(1, math.ceil(wait))
            raise RateLimited(f"too many {limit} for this API key: at most {n} a minute; retry in {retry} s",
                              retry_after_s=retry)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class Access:
    """Resolves requests to principals (see the module docstring for the modes)."""

    def __init__(self, token: SecretStr | None, keys: KeyStore, settings: KeysSettings) -> None:
        self._token = _digest(token.get_secret_value()) if token is not None else None
        self.keys = keys
        self.limiter = RateLimiter(settings)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of a request with this ``Authorization`` header, or :class:`Unauthenticated`."""
        try:
            keyed = self.keys.required()
        except ConfigError as exc:
            log.error("%s: every /api/* request is refused until it is fixed", exc)
            raise KeyStoreUnavailable(str(exc)) from None
        if self._token is None and not keyed:
            return OPERATOR
        given = bearer_token(authorization)
        if given is not None and self._token is not None and hmac.compare_digest(_digest(given), self._token):
            return OPERATOR
        if not keyed:
            raise Unauthenticated("missing or wrong token: send 'Authorization: Bearer <FAY_SERVER__TOKEN>'")
        if given is None:
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer fay_<id>_<secret>' (the "
                                  "operator creates keys with `fay keys create`)")
        record = self.keys.verify(given)
        if record is None:
            raise Unauthenticated("wrong API key (unknown or mistyped): send 'Authorization: Bearer <your key>' "
                                  "exactly as `fay keys create` printed it")
        if not record.active:
            raise Unauthenticated(f"API key {record.id} was revoked on {record.revoked}: send another one as "
                                  "'Authorization: Bearer <key>' (the operator creates keys with `fay keys create`)")
        return record.principal()

    def admit(self, request: web.Request) -> Principal:
        """Authenticate ``request`` and check the rule of the endpoint it reaches (scope, then rate limit)."""
        principal = self.authenticate(request.headers.get("Authorization"))
        if request.match_info.http_exception is None:  # an endpoint (unknown paths answer 404 after this)
            route = request.match_info.route
            rule = rule_of(route.handler)
            if rule.scope not in principal.scopes:
                where = route.resource.canonical if route.resource is not None else request.path
                raise MissingScope(f"this API key lacks the '{rule.scope}' scope that {request.method} {where} "
                                   f"needs: ask the operator for a key with it (fay keys create --scope {rule.scope})")
            if rule.limit is not None:
                self.limiter.take(principal, rule.limit)
        return principal


ACCESS: web.AppKey[Access] = web.AppKey("access", Access)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def principal(request: web.Request) -> Principal:
    """Who ``request`` acts for (set by :func:`auth_middleware` on every ``/api/*`` request)."""
    return request[PRINCIPAL]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admit ``/api/*`` requests (:meth:`Access.admit`); the rest (health, the web client) stay open."""
    if request.path.startswith("/api/"):
        request[PRINCIPAL] = request.app[ACCESS].admit(request)
    return await handler(request)
