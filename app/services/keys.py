"""API keys: create (the secret is shown once), list, revoke, and resolve a presented key to its tenant.

A tenant's key reads and writes that tenant's datasets and audits; an operator key (tenant
`(operator)`) reads only `/metrics`, the job counts of every tenant.

A key is `sa_` + 43 URL-safe characters (256 random bits). Only its sha256 is stored, so a database
leak reveals no usable key; the first characters (`prefix`) are kept to recognise a key in `keys list`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from synthaudit.app.core import repository as repo
from synthaudit.app.core.tables import ApiKey, utcnow

TOKEN_PREFIX = "sa_"
OPERATOR_TENANT = "(operator)"  # the owner of operator keys: no tenant can be named so (TENANT_PATTERN)
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most once a minute per key


class KeyCommandError(ValueError):
    """A key command got something it cannot use (bad tenant name, unknown key id)."""


@dataclass(frozen=True)
class NewKey:
    id: uuid.UUID
    tenant: str
    token: str  # shown once; never stored


@dataclass(frozen=True)
class KeyInfo:
    id: uuid.UUID
    tenant: str
    name: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.fullmatch(tenant or ""):
        raise KeyCommandError(
            "a tenant name is 1-64 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return tenant


def create_key(
    session: Session, tenant: str | None, name: str | None = None, operator: bool = False
) -> NewKey:
    """Create a key for the tenant, or an operator key (it reads `/metrics` only, every tenant's counts);
    the caller commits; the token is returned only here."""
    if operator:
        if tenant:
            raise KeyCommandError("an operator key belongs to no tenant: give --operator or --tenant")
        tenant = OPERATOR_TENANT
    else:
        tenant = check_tenant(tenant or "")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(tenant=tenant, name=name, prefix=token[:12], key_hash=hash_token(token))
    repo.add_key(session, key)
    return NewKey(key.id, tenant, token)


def list_keys(session: Session, tenant: str | None = None) -> list[KeyInfo]:
    """Every key (or the tenant's, when one is given), never their secrets."""
    return [
        KeyInfo(k.id, k.tenant, k.name, k.prefix, k.created_at, k.revoked_at, k.last_used_at)
        for k in repo.keys_of(session, tenant)
    ]


def revoke_key(session: Session, key_id: str) -> bool:
    """Revoke by id (or unique id prefix); False when it was already revoked. Raises on unknown ids;
    the caller commits."""
    matches = repo.keys_with_id_prefix(session, key_id.lower())
    if len(matches) != 1 or len(key_id) < 8:
        raise KeyCommandError(f"no single API key with id {key_id!r} (give at least 8 characters of the id)")
    key = matches[0]
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    return True


def tenant_of(session: Session, token: str) -> str | None:
    """The tenant of a valid, unrevoked key; None otherwise. Records when the key was last used (the
    caller commits)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    key = repo.key_by_hash(session, hash_token(token))
    if key is None or key.revoked_at is not None:
        return None
    now = utcnow()
    if key.last_used_at is None or now - _aware(key.last_used_at) > LAST_USED_RESOLUTION:
        repo.touch_key(session, key.id, now)
    return key.tenant


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)
