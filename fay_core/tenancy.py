"""Tenants: the banks (or branches) that share one Fay server and never see each other's things.

A tenant is a short name (:data:`TENANT_PATTERN`). Personas belong to one (``tenant:`` in the persona file,
``default`` if absent), API keys belong to one (``fay keys create --tenant``), and so do the sessions, audit
records and knowledge collections made through them. Requests without a key (an open server, or the shared
``server.token``) act for the ``default`` tenant.

Knowledge collections are namespaced: a persona of tenant ``bank-b`` naming collection ``faq`` searches
``tenant.bank-b.faq`` (:func:`tenant_collection`), so it cannot name another tenant's collection. The ``default``
tenant's names are kept as they are, and no persona may name a collection beginning with ``tenant.``
(:data:`RESERVED_PREFIX`).
"""

from __future__ import annotations

import re

from .errors import KnowledgeError

DEFAULT_TENANT = "default"
#: a tenant name: 1-24 lowercase letters, digits and '-', starting and ending with a letter or digit
TENANT_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$"
#: the collection names of tenants other than ``default`` begin with this; personas may not name such a collection
RESERVED_PREFIX = "tenant."

_TENANT = re.compile(TENANT_PATTERN)


def is_tenant(name: str) -> bool:
    """Whether ``name`` is a valid tenant name."""
    return bool(_TENANT.match(name))


def tenant_collection(tenant: str, name: str) -> str:
    """The knowledge collection that ``tenant``'s ``name`` is stored as: ``name`` itself for the default tenant,
    ``tenant.<tenant>.<name>`` for the others. Raises :class:`~fay_core.errors.KnowledgeError` if the result is
    over the 64 characters a collection name may have."""
    if tenant == DEFAULT_TENANT:
        return name
    full = f"{RESERVED_PREFIX}{tenant}.{name}"
    if len(full) > 64:
        raise KnowledgeError(f"collection name {name!r} is too long for tenant {tenant!r}: "
                             f"at most {64 - len(full) + len(name)} characters")
    return full
