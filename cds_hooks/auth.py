"""CDS Hooks 2.0 "Trusting CDS Clients": verification of the EHR's signed JWT.

Every call from a CDS Client (discovery, service, feedback) carries ``Authorization: Bearer <JWT>``.
The JWT is signed with the client's private key (ES384 or RS384); its public keys are a JWK Set, either
configured inline or served at a URL agreed out of band. Claims: ``iss`` (the client), ``aud`` (the exact
URL of the endpoint called, string or list), ``exp``, ``iat``, ``jti`` (nonce against replay) and an
optional ``tenant``; 2.0 has no ``sub``. Header: ``alg``, ``kid``, ``typ`` and optionally ``jku``.

Security choices (see the tests for each):
- only asymmetric algorithms can be configured; ``alg`` is checked against that allow list before any key
  is looked up, so ``none`` and ``HS*`` (including HMAC "signed" with a public key) never reach a key;
- the key is built with :class:`jwt.PyJWK` bound to the header's algorithm after checking that the JWK's
  type and curve fit that algorithm; private members of a JWK are dropped;
- ``jku`` is never fetched: the key is always looked up by ``kid`` among the issuer's registered keys (inline
  or ``jwks_url``), so a ``jku`` naming another URL cannot bring in a key. A differing ``jku`` is therefore not
  by itself a refusal (the CDS Hooks Sandbox names its public URL even when a site pins a copy of its keys),
  unless the client entry lists allowed ``jku`` values; then any other ``jku`` is refused;
- ``x5u``, ``x5c`` and ``jwk`` headers are ignored; ``crit`` is refused;
- time claims are checked with the injected clock (the same clock as the caches), ``leeway`` either way;
- ``jti`` is recorded only after everything else has passed, so unsigned tokens cannot fill the cache.

Error messages never contain the token, key material, or values copied from the token.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import jwt

from cds_hooks.jwks_fetch import MIN_RSA_BITS, JwksFetchError, fetch_jwks, rsa_key_bits

__all__ = [
    "AUTH_ERROR_CATEGORIES",
    "AuthError",
    "InMemoryReplayCache",
    "JwtVerifier",
    "ReplayCache",
    "TrustedClient",
    "load_clients",
]

logger = logging.getLogger(__name__)

AUTH_ERROR_CATEGORIES = frozenset(
    {
        "missing-token",
        "malformed-token",
        "unsupported-algorithm",
        "unknown-issuer",
        "unknown-key",
        "bad-signature",
        "expired",
        "not-yet-valid",
        "bad-audience",
        "missing-claim",
        "replayed-jti",
        "jwks-unavailable",
    }
)

# Asymmetric JWS algorithms that may be configured, with the JWK type (and EC curve) each needs.
_ALG_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}

# Public members of the JWK types we accept (everything else, notably private parameters, is dropped).
_PUBLIC_JWK_MEMBERS = {
    "EC": ("kty", "crv", "x", "y", "kid", "alg", "use", "key_ops"),
    "RSA": ("kty", "n", "e", "kid", "alg", "use", "key_ops"),
}
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
_MAX_TOKEN_CHARS = 16_384
_MAX_JWKS_BYTES = 512 * 1024


# --------------------------------------------------------------------------------------------- errors


class AuthError(Exception):
    """A CDS Client JWT was refused. ``category`` is one of :data:`AUTH_ERROR_CATEGORIES`."""

    def __init__(self, category: str, message: str) -> None:
        if category not in AUTH_ERROR_CATEGORIES:
            raise ValueError(f"unknown AuthError category {category!r}")
        super().__init__(message)
        self.category = category
        self.message = message

    def __repr__(self) -> str:
        return f"AuthError({self.category!r}, {self.message!r})"

    @property
    def www_authenticate(self) -> str:
        """Value for a ``WWW-Authenticate`` response header (RFC 6750)."""
        if self.category == "missing-token":
            return 'Bearer realm="cds-hooks"'
        if self.category == "jwks-unavailable":
            return 'Bearer realm="cds-hooks", error="invalid_token", error_description="keys unavailable"'
        return 'Bearer realm="cds-hooks", error="invalid_token"'


# ------------------------------------------------------------------------------------ trusted clients


@dataclass(frozen=True)
class TrustedClient:
    """A CDS Client allowed in: its ``iss`` and its JWK Set (inline ``jwks`` or fetched from ``jwks_url``).

    ``jku``: optional allow-list of JWK Set URLs a token of this client may name in its ``jku`` header (never
    fetched; only compared). Empty = any ``jku`` (or none) is fine, the key still comes from the registration.
    """

    iss: str
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = field(default=None, hash=False)
    jku: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.iss, str) or not self.iss.strip():
            raise ValueError("TrustedClient.iss must be a non-empty string")
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError(f"trusted client {self.iss!r}: give exactly one of 'jwks_url' or 'jwks'")
        if self.jwks_url is not None:
            if not isinstance(self.jwks_url, str) or not self.jwks_url.startswith(("https://", "http://")):
                raise ValueError(f"trusted client {self.iss!r}: 'jwks_url' must be an http(s) URL")
        if self.jwks is not None:
            _check_inline_jwks(self.iss, self.jwks)
        _check_jku_allow_list(self.iss, self.jku)

    def jku_allowed(self, jku: Any) -> bool:
        """Whether a token's ``jku`` header (None when absent) passes this client's allow-list."""
        if jku is None or not self.jku:
            return True
        return isinstance(jku, str) and jku in self.jku


def _check_jku_allow_list(iss: str, jku: Any) -> None:
    if not isinstance(jku, tuple) or not all(
        isinstance(u, str) and u.startswith(("https://", "http://")) for u in jku
    ):
        raise ValueError(f"trusted client {iss!r}: 'jku' must be a list of http(s) URLs")


def _check_inline_jwks(iss: str, jwks: Any) -> None:
    where = f"trusted client {iss!r}"
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError(f"{where}: 'jwks' must be a JWK Set object with a non-empty 'keys' list")
    for i, key in enumerate(jwks["keys"]):
        if not isinstance(key, dict):
            raise ValueError(f"{where}: jwks.keys[{i}] is not an object")
        kty = key.get("kty")
        if kty not in _PUBLIC_JWK_MEMBERS:
            raise ValueError(
                f"{where}: jwks.keys[{i}] has kty {kty!r}; only public 'EC' or 'RSA' keys are allowed"
            )
        if any(m in key for m in _PRIVATE_JWK_MEMBERS):
            raise ValueError(
                f"{where}: jwks.keys[{i}] contains private key material; configure the public key only"
            )
        try:
            jwt.PyJWK(_public_jwk(key))
        except jwt.PyJWTError:
            raise ValueError(f"{where}: jwks.keys[{i}] is not a usable {kty} public key") from None


_CLIENT_FIELDS = {"iss", "jwks_url", "jwks", "jku"}


def _jku_list(value: Any) -> tuple[str, ...]:
    """The file's ``jku`` field: one URL or a list of URLs (validated by TrustedClient)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    return value  # type: ignore[no-any-return]  # rejected with a clear message by TrustedClient


def load_clients(path: str | Path) -> list[TrustedClient]:
    """Read the trusted-clients file: a JSON list of ``{"iss", "jwks_url"}`` or ``{"iss", "jwks"}`` objects,
    each with an optional ``jku`` allow-list (a URL or a list of URLs).

    Raises ``ValueError`` with a message naming the file and the entry for any problem.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read trusted clients file {str(p)!r}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"trusted clients file {str(p)!r} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, list):
        raise ValueError(f"trusted clients file {str(p)!r} must contain a JSON list of client objects")
    clients: list[TrustedClient] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        where = f"trusted clients file {str(p)!r}, entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object")
        unknown = sorted(set(entry) - _CLIENT_FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; allowed: iss, jwks_url, jwks, jku")
        try:
            client = TrustedClient(
                iss=entry.get("iss", ""), jwks_url=entry.get("jwks_url"), jwks=entry.get("jwks"),
                jku=_jku_list(entry.get("jku")),
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if client.iss in seen:
            raise ValueError(f"{where}: duplicate iss {client.iss!r}")
        seen.add(client.iss)
        clients.append(client)
    return clients


# ------------------------------------------------------------------------------------- replay cache


@runtime_checkable
class ReplayCache(Protocol):
    async def seen(self, iss: str, jti: str, exp: int) -> bool:
        """True if (iss, jti) was seen before; otherwise record it until ``exp`` and return False.

        ``exp`` (epoch seconds) is the last moment the token could still be accepted (its ``exp`` claim
        plus leeway).
        A shared implementation (database, Redis) is needed when several worker processes serve requests.
        """
        ...


class InMemoryReplayCache:
    """Process-local replay cache: expired entries are purged; at ``max_entries`` the entries closest to
    expiry are evicted first."""

    def __init__(self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max = max_entries
        self._clock = clock
        self._expiry: dict[tuple[str, str], int] = {}
        self._heap: list[tuple[int, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            _, key = heapq.heappop(self._heap)
            self._expiry.pop(key, None)

    async def seen(self, iss: str, jti: str, exp: int) -> bool:
        # No await inside: atomic with respect to other coroutines on the loop.
        now = self._clock()
        self._purge(now)
        key = (iss, jti)
        if key in self._expiry:
            return True
        while len(self._expiry) >= self._max and self._heap:
            _, old = heapq.heappop(self._heap)
            self._expiry.pop(old, None)
        self._expiry[key] = exp
        heapq.heappush(self._heap, (exp, key))
        return False


# ----------------------------------------------------------------------------------------- verifier


@dataclass
class _JwksState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    keys: list[dict[str, Any]] | None = None
    fetched_at: float | None = None  # last successful fetch
    attempted_at: float | None = None  # last fetch attempt (success or failure)
    failed: bool = False


def _public_jwk(key: dict[str, Any]) -> dict[str, Any]:
    kty = key.get("kty")
    members = _PUBLIC_JWK_MEMBERS.get(kty, ()) if isinstance(kty, str) else ()
    return {m: key[m] for m in members if m in key}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class JwtVerifier:
    """Verifies ``Authorization: Bearer <JWT>`` from trusted CDS Clients.

    ``audience`` passed to :meth:`verify` must be the exact public URL of the endpoint being called
    (e.g. ``https://cds.example.org/cds-services/mbc-palliative-care``), or a list of accepted spellings.
    """

    def __init__(
        self,
        clients: Iterable[TrustedClient],
        http: httpx.AsyncClient,
        *,
        algorithms: Sequence[str] = ("ES384", "RS384"),
        leeway: float = 30,
        jwks_ttl: float = 300.0,
        jwks_refetch_interval: float = 10.0,
        jwks_failure_backoff: float = 2.0,
        jwks_timeout: float = 5.0,
        max_token_lifetime: float | None = 3600,
        replay_cache: ReplayCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clients: dict[str, TrustedClient] = {}
        for client in clients:
            if client.iss in self._clients:
                raise ValueError(f"duplicate trusted client iss {client.iss!r}")
            self._clients[client.iss] = client
        algs = tuple(algorithms)
        if not algs:
            raise ValueError("at least one algorithm must be allowed")
        bad = [a for a in algs if a not in _ALG_KEY_TYPES]
        if bad:
            raise ValueError(
                f"only asymmetric JWS algorithms can be allowed ({sorted(_ALG_KEY_TYPES)}), not {bad}"
            )
        if leeway < 0 or jwks_ttl < 0 or jwks_refetch_interval < 0 or jwks_failure_backoff < 0:
            raise ValueError("leeway and JWKS timings must be >= 0")
        self.algorithms = algs
        self.leeway = float(leeway)
        self.jwks_ttl = float(jwks_ttl)
        self.jwks_refetch_interval = float(jwks_refetch_interval)
        self.jwks_failure_backoff = float(jwks_failure_backoff)
        self.jwks_timeout = float(jwks_timeout)
        self.max_token_lifetime = max_token_lifetime
        self._http = http
        self._clock = clock
        self.replay_cache: ReplayCache = (
            replay_cache if replay_cache is not None else InMemoryReplayCache(clock=clock)
        )
        self._jwks: dict[str, _JwksState] = {
            c.iss: _JwksState() for c in self._clients.values() if c.jwks_url is not None
        }

    # ----------------------------------------------------------------------------------- public API

    async def verify(self, authorization_header: str | None, audience: str | list[str]) -> dict[str, Any]:
        """Return the verified claims, or raise :class:`AuthError`."""
        if not audience or (
            not isinstance(audience, str) and not all(isinstance(a, str) and a for a in audience)
        ):
            raise ValueError("audience must be a non-empty URL or a list of non-empty URLs")
        token = self._bearer_token(authorization_header)
        header = self._unverified_header(token)

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthError(
                "unsupported-algorithm",
                f"JWT 'alg' is missing or not allowed; allowed: {', '.join(self.algorithms)}",
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("malformed-token", "JWT 'kid' header must be a string")
        if "crit" in header or "b64" in header:
            raise AuthError("malformed-token", "JWT critical header extensions are not supported")

        client = self._client_for(token)

        if not client.jku_allowed(header.get("jku")):
            # Never fetched either way: a key URL chosen by the token's author proves nothing.
            raise AuthError("unknown-key", "JWT 'jku' is not one of the JWK Set URLs allowed for this issuer")

        key = await self._key_for(client, kid, alg)

        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=client.iss,
                leeway=self.leeway,
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    # Time claims are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise _map_pyjwt_error(exc) from None

        exp = self._check_times(claims)
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise AuthError("malformed-token", "JWT 'jti' must be a non-empty string")
        keep_until = math.ceil(exp + self.leeway)
        if await self.replay_cache.seen(client.iss, jti, keep_until):
            raise AuthError("replayed-jti", "JWT 'jti' has already been used")
        return claims

    # ---------------------------------------------------------------------------------- token parts

    @staticmethod
    def _bearer_token(authorization_header: str | None) -> str:
        if authorization_header is None or not authorization_header.strip():
            raise AuthError("missing-token", "Authorization header with a Bearer JWT is required")
        parts = authorization_header.strip().split()
        if parts[0].lower() != "bearer":
            raise AuthError("missing-token", "Authorization header must use the Bearer scheme")
        if len(parts) == 1:
            raise AuthError("missing-token", "Authorization header has no Bearer token")
        if len(parts) > 2:
            raise AuthError("malformed-token", "Authorization header must be 'Bearer <JWT>'")
        token = parts[1]
        if len(token) > _MAX_TOKEN_CHARS:
            raise AuthError("malformed-token", "JWT is too large")
        if token.count(".") != 2:
            raise AuthError("malformed-token", "Bearer token is not a compact JWS (header.payload.signature)")
        return token

    @staticmethod
    def _unverified_header(token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed-token", "JWT header cannot be decoded") from None
        if not isinstance(header, dict):
            raise AuthError("malformed-token", "JWT header is not a JSON object")
        return header

    def _client_for(self, token: str) -> TrustedClient:
        try:
            payload = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("malformed-token", "JWT payload cannot be decoded") from None
        if not isinstance(payload, dict):
            raise AuthError("malformed-token", "JWT payload is not a JSON object")
        iss = payload.get("iss")
        if iss is None:
            raise AuthError("missing-claim", "JWT has no 'iss' claim")
        if not isinstance(iss, str) or iss not in self._clients:
            raise AuthError("unknown-issuer", "JWT 'iss' is not a trusted CDS Client")
        return self._clients[iss]

    def _check_times(self, claims: dict[str, Any]) -> float:
        now = self._clock()
        exp, iat = claims["exp"], claims["iat"]
        if not _is_number(exp) or not _is_number(iat):
            raise AuthError("malformed-token", "JWT 'exp' and 'iat' must be numbers (epoch seconds)")
        if exp <= now - self.leeway:
            raise AuthError("expired", "JWT has expired")
        if iat > now + self.leeway:
            raise AuthError("not-yet-valid", "JWT 'iat' is in the future")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_number(nbf):
                raise AuthError("malformed-token", "JWT 'nbf' must be a number")
            if nbf > now + self.leeway:
                raise AuthError("not-yet-valid", "JWT is not valid yet (nbf)")
        if self.max_token_lifetime is not None and exp - iat > self.max_token_lifetime:
            raise AuthError(
                "expired",
                f"JWT lifetime (exp - iat) exceeds the accepted maximum of {self.max_token_lifetime:g} s",
            )
        return float(exp)

    # ------------------------------------------------------------------------------------------ keys

    async def _key_for(self, client: TrustedClient, kid: str | None, alg: str) -> jwt.PyJWK:
        keys = await self._keys(client, refresh=False)
        jwk = _select_key(keys, kid, alg)
        if jwk is None and client.jwks_url is not None and kid is not None:
            # Possibly a key rotation: refetch once (rate limited per issuer).
            keys = await self._keys(client, refresh=True)
            jwk = _select_key(keys, kid, alg)
        if jwk is None:
            raise AuthError("unknown-key", "no key of this issuer matches the JWT 'kid' and 'alg'")
        try:
            return jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise AuthError("unknown-key", "the issuer's matching JWK cannot be used") from None

    async def _keys(self, client: TrustedClient, *, refresh: bool) -> list[dict[str, Any]]:
        if client.jwks is not None:
            return list(client.jwks["keys"])
        state = self._jwks[client.iss]
        if not refresh and self._fresh(state):
            return state.keys or []
        async with state.lock:
            now = self._clock()
            if not refresh and self._fresh(state):
                return state.keys or []  # another coroutine fetched while we waited
            if (
                state.failed
                and state.attempted_at is not None
                and now - state.attempted_at < self.jwks_failure_backoff
            ):
                raise AuthError("jwks-unavailable", "the issuer's JWK Set could not be fetched")
            if (
                refresh
                and state.keys is not None
                and state.attempted_at is not None
                and now - state.attempted_at < self.jwks_refetch_interval
            ):
                return state.keys  # rate limited (or just refetched by another coroutine)
            return await self._fetch(client, state)

    def _fresh(self, state: _JwksState) -> bool:
        return (
            state.keys is not None
            and state.fetched_at is not None
            and self._clock() - state.fetched_at < self.jwks_ttl
        )

    async def _fetch(self, client: TrustedClient, state: _JwksState) -> list[dict[str, Any]]:
        assert client.jwks_url is not None
        try:
            data = await fetch_jwks(self._http, client.jwks_url, deadline=self.jwks_timeout,
                                    max_bytes=_MAX_JWKS_BYTES)
        except JwksFetchError as exc:
            # Rate limits count from the END of a fetch: a fetch that took the whole deadline must not let
            # the next one start at once.
            state.attempted_at = self._clock()
            state.failed = True
            logger.warning("JWK Set fetch failed for %s: %s", client.jwks_url, exc)
            raise AuthError("jwks-unavailable", "the issuer's JWK Set could not be fetched") from None
        state.attempted_at = self._clock()
        keys = [k for k in data["keys"] if isinstance(k, dict) and k.get("kty") in _PUBLIC_JWK_MEMBERS
                and not _weak_rsa(k)]
        state.keys = keys
        state.fetched_at = state.attempted_at
        state.failed = False
        logger.info("fetched JWK Set for %s (%d usable keys)", client.jwks_url, len(keys))
        return keys


def _weak_rsa(jwk: dict[str, Any]) -> bool:
    bits = rsa_key_bits(jwk)
    return bits is not None and bits < MIN_RSA_BITS


def _key_fits(jwk: dict[str, Any], alg: str) -> bool:
    kty, crv = _ALG_KEY_TYPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return False
    if "alg" in jwk and jwk["alg"] != alg:
        return False
    if "use" in jwk and jwk["use"] != "sig":
        return False
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return False
    return True


def _select_key(keys: list[dict[str, Any]], kid: str | None, alg: str) -> dict[str, Any] | None:
    if kid is None:
        # CDS Hooks 2.0 requires kid; tolerate its absence only when the set holds a single key.
        candidates = keys if len(keys) == 1 else []
    else:
        candidates = [k for k in keys if k.get("kid") == kid]
    for key in candidates:
        if _key_fits(key, alg):
            return _public_jwk(key)
    return None


def _map_pyjwt_error(exc: jwt.PyJWTError) -> AuthError:
    # Order matters: subclasses before their bases. Fixed messages: PyJWT's may quote token or key data.
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return AuthError("missing-claim", f"JWT lacks the required claim {exc.claim!r}")
    if isinstance(exc, jwt.InvalidAudienceError):
        return AuthError("bad-audience", "JWT 'aud' does not name this endpoint's URL")
    if isinstance(exc, jwt.InvalidIssuerError):
        return AuthError("unknown-issuer", "JWT 'iss' is not a trusted CDS Client")
    if isinstance(exc, jwt.ExpiredSignatureError):
        return AuthError("expired", "JWT has expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return AuthError("not-yet-valid", "JWT is not valid yet")
    if isinstance(exc, jwt.InvalidSignatureError):
        return AuthError("bad-signature", "JWT signature verification failed")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return AuthError("unsupported-algorithm", "JWT 'alg' does not match the issuer's key")
    if isinstance(exc, jwt.InvalidKeyError | jwt.PyJWKError):
        return AuthError("unknown-key", "the issuer's key cannot verify this JWT")
    return AuthError("malformed-token", "JWT is malformed")
