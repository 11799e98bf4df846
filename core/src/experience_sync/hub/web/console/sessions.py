"""Console sessions: a random id in a cookie, the principal kept server-side.

Signing in checks a hub token once (:meth:`Authenticator.authenticate`); the
session then holds the token's :class:`~experience_sync.hub.web.auth.Principal`
and the sha256 of its secret (what the store keeps anyway), never the token.
Every :data:`RECHECK_SECONDS` a request looks the token's record up again, so
a token revoked with ``experience-sync token revoke`` ends its console
sessions too. Sessions live in this process's memory: restarting the hub
signs everyone out.

Each session has its own CSRF token, required on every POST. Before a session
exists, the sign-in form is protected by a double-submit cookie
(:data:`PRESESSION_COOKIE`), so a third-party page cannot sign a browser in
with an attacker's token.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from experience_sync.hub.web.auth import Principal
from experience_sync.interfaces import Store

#: Seconds a session lasts without a request (``EXPERIENCE_SYNC_CONSOLE_IDLE_SECONDS``).
IDLE_SECONDS = float(os.environ.get("EXPERIENCE_SYNC_CONSOLE_IDLE_SECONDS", 30 * 60))
#: Seconds a session lasts at most, however active (``EXPERIENCE_SYNC_CONSOLE_MAX_SECONDS``).
MAX_SECONDS = float(os.environ.get("EXPERIENCE_SYNC_CONSOLE_MAX_SECONDS", 12 * 3600))
#: Seconds between two checks that a session's token is still valid.
RECHECK_SECONDS = 5.0
#: Sessions kept at once; the least recently used is dropped beyond this.
MAX_SESSIONS = 10_000

SESSION_COOKIE = "xs_console"
#: Under TLS the cookie takes the ``__Host-`` prefix: Secure, host-only, path ``/``.
SECURE_SESSION_COOKIE = "__Host-xs_console"
PRESESSION_COOKIE = "xs_console_signin"
SECURE_PRESESSION_COOKIE = "__Host-xs_console_signin"


@dataclass
class ConsoleSession:
    """One signed-in browser.

    :param session_id: the cookie's value (random, 32 bytes).
    :param principal: who signed in; its ``agent_id`` binds the session to one agent.
    :param csrf: the token every form of this session carries.
    :param token_hash: sha256 of the token's secret (``None`` on a ``--no-auth`` hub).
    """

    session_id: str
    principal: Principal
    csrf: str
    token_hash: str | None
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    checked: float = field(default_factory=time.monotonic)

    @property
    def can_decide(self) -> bool:
        """Whether this session may accept or reject reviews (a review or write token, or no auth)."""
        return self.principal.unrestricted or self.principal.scope in ("write", "review", "admin")

    @property
    def can_forget(self) -> bool:
        """Whether this session may forget and read the forget audit trail (an admin token, or no auth)."""
        return self.principal.unrestricted or self.principal.scope == "admin"

    def csrf_ok(self, value: str | None) -> bool:
        """Whether a submitted CSRF token is this session's (constant time)."""
        return bool(value) and hmac.compare_digest(self.csrf, value or "")


class SessionStore:
    """The console's sessions, in memory, thread-safe.

    :param store: where token records are looked up again (revocation).
    :param idle: seconds without a request before a session ends.
    :param lifetime: seconds after which a session ends regardless.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        idle: float = IDLE_SECONDS,
        lifetime: float = MAX_SECONDS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.store = store
        self.idle = idle
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, ConsoleSession] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def create(self, principal: Principal, token_hash: str | None) -> ConsoleSession:
        """Start a session for ``principal``."""
        session = ConsoleSession(
            session_id=secrets.token_urlsafe(32),
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            token_hash=token_hash,
        )
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        """The live session with this id, or ``None`` (unknown, expired or its token revoked)."""
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_seen > self.idle or now - session.created > self.lifetime:
                del self._sessions[session_id]
                return None
            recheck = now - session.checked >= RECHECK_SECONDS
        if recheck and not self._token_valid(session):
            self.drop(session_id)
            return None
        with self._lock:
            session.last_seen = now
            if recheck:
                session.checked = now
            self._sessions.move_to_end(session_id)
        return session

    def _token_valid(self, session: ConsoleSession) -> bool:
        if session.token_hash is None or self.store is None:
            return True
        record = self.store.token_by_hash(session.token_hash)
        return record is not None and not record.revoked

    def drop(self, session_id: str | None) -> None:
        """End a session (sign-out)."""
        if not session_id:
            return
        with self._lock:
            self._sessions.pop(session_id, None)


__all__ = [
    "IDLE_SECONDS",
    "MAX_SECONDS",
    "PRESESSION_COOKIE",
    "SECURE_PRESESSION_COOKIE",
    "SECURE_SESSION_COOKIE",
    "SESSION_COOKIE",
    "ConsoleSession",
    "SessionStore",
]
