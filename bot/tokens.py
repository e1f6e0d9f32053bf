"""Per-user API tokens: signed, so the app keeps no token store, and bound to one user.

A token is `eat1.<payload>.<signature>`: the payload (base64url JSON) names the user, the expiry and, if the
admin gave them, the name and address its emails carry (From's display name, Reply-To), the
signature is an HMAC-SHA256 of it under a key derived from the admin token (API_TOKEN). Rotating API_TOKEN
therefore revokes every user token at once; a single token is revoked by letting it expire (they are
short-lived by default). The admin token itself is never derivable from a user token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

PREFIX = "eat1"
MAX_USER_LENGTH = 200


@dataclass(frozen=True)
class UserToken:
    user: str
    expires_at: int  # unix seconds
    name: str | None = None  # vouched for by the admin who issued it: what From says about the user
    email: str | None = None  # likewise: the user's Reply-To


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, admin_token: str):
        self._key = hmac.new(admin_token.encode(), b"email-agent user tokens v1", hashlib.sha256).digest()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(
        self,
        user: str,
        ttl_seconds: int,
        now: float | None = None,
        name: str | None = None,
        email: str | None = None,
    ) -> tuple[str, UserToken]:
        expires = int((time.time() if now is None else now) + ttl_seconds)
        claims: dict[str, object] = {"u": user, "exp": expires}
        claims |= {k: v for k, v in (("n", name), ("e", email)) if v is not None}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{PREFIX}.{payload}.{self._sign(payload)}", UserToken(user, expires, name, email)

    def verify(self, token: str, now: float | None = None) -> UserToken | None:
        """The token's user, or None if it is not one of ours, was altered, or has expired."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        _, payload, signature = parts
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            claims = json.loads(_unb64(payload))
            user, expires = str(claims["u"]), int(claims["exp"])
            name, email = claims.get("n"), claims.get("e")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not user or len(user) > MAX_USER_LENGTH or expires <= (time.time() if now is None else now):
            return None
        if not all(v is None or isinstance(v, str) for v in (name, email)):
            return None
        return UserToken(user, expires, name, email)
