"""Who is calling: the tenant whose jobs and receipts a request may see.

A tenant owns what it submitted; another tenant asking for it gets the same 404 as for an
id that does not exist. The admin scope sees everything. With no API keys configured
(the loopback demo) every caller is the one tenant ``default``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from service.settings import ApiKey, Scope

DEFAULT_TENANT = "default"
# Tenants named in XAI_API_KEYS cannot contain ':', so an implicit one never collides.
KEY_TENANT_PREFIX = "key:"


@dataclass(frozen=True)
class Caller:
    tenant: str
    scopes: frozenset[Scope]

    @property
    def admin(self) -> bool:
        return Scope.admin in self.scopes

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes or self.admin

    def sees(self, owner: str) -> bool:
        """Whether this caller may see (and cancel) what ``owner`` submitted."""
        return self.admin or owner == self.tenant


OPEN_CALLER = Caller(DEFAULT_TENANT, frozenset({Scope.explain, Scope.admin}))


def tenant_of(key: str, grant: ApiKey) -> str:
    """The grant's tenant, or for a key without one a tenant of its own, named by a digest
    of the key (never the key itself)."""
    if grant.tenant is not None:
        return grant.tenant
    return KEY_TENANT_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16]
