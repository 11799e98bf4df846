"""Hub access tokens: creation, hashed storage and request authorization.

A token reads ``xs_<token_id>_<secret>``: ``token_id`` is a public handle
(what ``token list`` and ``token revoke`` show), ``secret`` 32 random bytes in
URL-safe base64. Only ``sha256(secret)`` is stored, through the
:class:`~experience_sync.interfaces.Store` token methods, so a leaked store
does not leak usable tokens. Comparison is constant-time.

A token is bound to one ``(agent_id, instance_id)`` pair with scope
``write`` (sending experiences, deciding reviews and reading), ``review``
(deciding reviews and reading: an operator's token for the console),
``admin`` (what ``review`` may, plus forgetting and reading the forget audit
trail; never sending experiences: ``experience-sync token create --scope
admin``) or ``read``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from experience_sync.interfaces import Store, TokenRecord
from experience_sync.models import CheckIn, EventsRequest, ExperienceBatch, new_id, utcnow

TOKEN_PREFIX = "xs"
Scope = Literal["write", "read", "review", "admin"]
#: Every scope, for validation and the CLI.
SCOPES: tuple[Scope, ...] = ("write", "review", "read", "admin")


class AuthError(Exception):
    """A request is not allowed: ``status`` is 401 (who are you) or 403 (not this).

    422 when the path's agent id is one no store can hold (:func:`check_agent_id`).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


#: Longest agent id a path may name (the ids in bodies have the same cap).
MAX_AGENT_ID = 200


def check_agent_id(agent_id: str) -> None:
    """Refuse (422) an agent id that is empty, longer than 200 or holds NUL."""
    if not agent_id or len(agent_id) > MAX_AGENT_ID or "\x00" in agent_id:
        raise AuthError(
            422, f"agent_id must be 1 to {MAX_AGENT_ID} characters without NUL (\\u0000)"
        )


@dataclass(frozen=True)
class Principal:
    """Who a request is from. ``agent_id`` ``None`` means any agent (``--no-auth``)."""

    agent_id: str | None
    instance_id: str | None
    scope: Scope
    token_id: str | None = None

    @property
    def unrestricted(self) -> bool:
        """Whether this is the unauthenticated principal of a ``--no-auth`` hub."""
        return self.agent_id is None


ANONYMOUS = Principal(agent_id=None, instance_id=None, scope="write")


def hash_secret(secret: str) -> str:
    """The stored form of a token secret: hex sha256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(token_id, secret)`` of a well-formed token, else ``None``."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def create_token(
    store: Store, agent_id: str, instance_id: str, scope: Scope = "write"
) -> tuple[str, TokenRecord]:
    """Create and store a token; returns ``(token, record)``. The token is shown once."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if not agent_id or not instance_id:
        raise ValueError("a token needs an agent id and an instance id")
    token_id = new_id()[:16]
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(
        token_id=token_id,
        token_hash=hash_secret(secret),
        agent_id=agent_id,
        instance_id=instance_id,
        scope=scope,
        created_at=utcnow(),
    )
    store.put_token(record)
    return f"{TOKEN_PREFIX}_{token_id}_{secret}", record


class Authenticator:
    """Checks bearer tokens against a store and authorizes what a principal may do.

    :param store: where token records live.
    :param enabled: ``False`` for a ``--no-auth`` hub: every request is
        :data:`ANONYMOUS` (only ever allowed on loopback, see ``serve``).
    """

    def __init__(self, store: Store, *, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled

    def authenticate(self, token: str | None) -> Principal:
        """The principal a token stands for; :class:`AuthError` 401 if none."""
        if not self.enabled:
            return ANONYMOUS
        if not token:
            raise AuthError(401, "missing bearer token")
        parts = split_token(token.strip())
        if parts is None:
            raise AuthError(401, "malformed token")
        token_id, secret = parts
        digest = hash_secret(secret)
        record = self.store.token_by_hash(digest)
        # The lookup is by hash; compare again in constant time, and check the
        # public id so a secret cannot be paired with another token's id.
        if (
            record is None
            or not hmac.compare_digest(record.token_hash, digest)
            or not hmac.compare_digest(record.token_id, token_id)
        ):
            raise AuthError(401, "unknown token")
        if record.revoked:
            raise AuthError(401, "revoked token")
        return Principal(record.agent_id, record.instance_id, record.scope, record.token_id)

    @staticmethod
    def authorize_read(principal: Principal, agent_id: str) -> None:
        """Allow reading ``agent_id``'s state, or raise 403 (422 for an agent id no store holds)."""
        check_agent_id(agent_id)
        if principal.unrestricted:
            return
        if principal.agent_id != agent_id:
            raise AuthError(403, f"token is for agent {principal.agent_id!r}, not {agent_id!r}")

    @staticmethod
    def authorize_write(
        principal: Principal,
        agent_id: str,
        payload: EventsRequest | ExperienceBatch | CheckIn | None = None,
    ) -> None:
        """Allow ``payload`` to be written to ``agent_id``, or raise 403.

        The token's instance must be the unit's ``instance_id`` and every
        event's ``source_instance``; a unit or event naming another agent is
        refused too. An agent id no store can hold is a 422.
        """
        check_agent_id(agent_id)
        if principal.unrestricted:
            _check_agents(agent_id, payload)
            return
        if principal.agent_id != agent_id:
            raise AuthError(403, f"token is for agent {principal.agent_id!r}, not {agent_id!r}")
        if principal.scope != "write":
            raise AuthError(
                403, f"token has {principal.scope} scope; writing needs a write token"
            )
        if payload is None:
            return
        if payload.instance_id != principal.instance_id:
            raise AuthError(
                403,
                f"instance_id {payload.instance_id!r} does not match the token's "
                f"instance {principal.instance_id!r}",
            )
        for i, event in enumerate(payload.events):
            if event.source_instance != principal.instance_id:
                raise AuthError(
                    403,
                    f"events.{i}.source_instance {event.source_instance!r} does not match "
                    f"the token's instance {principal.instance_id!r}",
                )
        _check_agents(agent_id, payload)


def authorize_review(principal: Principal, agent_id: str) -> None:
    """Allow deciding ``agent_id``'s reviews (a ``write`` or ``review`` token), or raise 403."""
    Authenticator.authorize_read(principal, agent_id)
    if not principal.unrestricted and principal.scope not in ("write", "review", "admin"):
        raise AuthError(403, "token has read scope; deciding a review needs a review or write token")


def authorize_admin(principal: Principal, agent_id: str) -> None:
    """Allow forgetting ``agent_id``'s experiences and reading its audit trail (admin scope), or 403."""
    Authenticator.authorize_read(principal, agent_id)
    if not principal.unrestricted and principal.scope != "admin":
        raise AuthError(
            403, f"token has {principal.scope} scope; forgetting needs an admin token"
        )


def _check_agents(
    agent_id: str, payload: EventsRequest | ExperienceBatch | CheckIn | None
) -> None:
    if payload is None:
        return
    unit_agent = getattr(payload, "agent_id", None)
    if unit_agent is not None and unit_agent != agent_id:
        raise AuthError(403, f"agent_id {unit_agent!r} does not match the path's {agent_id!r}")
    for i, event in enumerate(payload.events):
        if event.agent_id is not None and event.agent_id != agent_id:
            raise AuthError(
                403, f"events.{i}.agent_id {event.agent_id!r} does not match the path's {agent_id!r}"
            )
