"""CDS Hooks 2.0 client JWT verification (cds_hooks.auth)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_hooks.auth import (
    AuthError,
    InMemoryReplayCache,
    JwtVerifier,
    ReplayCache,
    TrustedClient,
    load_clients,
)

AUD = "https://cds.example.org/cds-services/mbc-palliative-care"
DISCOVERY = "https://cds.example.org/cds-services"
ISS_INLINE = "https://ehr.example.com"
ISS_URL = "https://sandbox.cds-hooks.org"
JWKS_URL = "https://sandbox.cds-hooks.org/.well-known/jwks.json"


# ------------------------------------------------------------------------------------------ helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algo.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def ec_key_other() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_rotated() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(iss: str = ISS_INLINE, aud: Any = AUD, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    c: dict[str, Any] = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def sign(payload: dict[str, Any], key: Any, alg: str, kid: str | None, **headers: Any) -> str:
    h: dict[str, Any] = {"typ": "JWT", **headers}
    if kid is not None:
        h["kid"] = kid
    return jwt.encode(payload, key, algorithm=alg, headers=h)


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture
def clients(ec_key, rsa_key) -> list[TrustedClient]:
    return [
        TrustedClient(iss=ISS_INLINE, jwks_url=None, jwks={"keys": [public_jwk(ec_key, "ec-1", "ES384")]}),
        TrustedClient(iss=ISS_URL, jwks_url=JWKS_URL, jwks=None),
    ]


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def verifier(clients, http) -> JwtVerifier:
    return JwtVerifier(clients, http)


@pytest.fixture
def jwks_mock(rsa_key):
    """The URL-based issuer serves its RSA key (kid rsa-1) at JWKS_URL."""
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(JWKS_URL).mock(
            return_value=httpx.Response(200, json={"keys": [public_jwk(rsa_key, "rsa-1", "RS384")]})
        )
        yield mock, route


async def expect(verifier: JwtVerifier, header: str | None, category: str, audience: Any = AUD) -> AuthError:
    with pytest.raises(AuthError) as info:
        await verifier.verify(header, audience)
    assert info.value.category == category, info.value
    return info.value


# -------------------------------------------------------------------------------------------- valid


async def test_valid_es384_inline_jwks(verifier, ec_key):
    payload = claims(tenant="hospital-1")
    out = await verifier.verify(bearer(sign(payload, ec_key, "ES384", "ec-1")), AUD)
    assert out["iss"] == ISS_INLINE and out["jti"] == payload["jti"] and out["tenant"] == "hospital-1"
    assert "sub" not in out


async def test_valid_rs384_fetched_jwks(verifier, rsa_key, jwks_mock):
    _, route = jwks_mock
    out = await verifier.verify(bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), AUD)
    assert out["iss"] == ISS_URL
    assert route.call_count == 1


async def test_aud_list_containing_url_accepted(verifier, ec_key):
    token = sign(claims(aud=["https://other.example.org/x", AUD]), ec_key, "ES384", "ec-1")
    assert (await verifier.verify(bearer(token), AUD))["aud"][1] == AUD


async def test_discovery_audience(verifier, ec_key):
    token = sign(claims(aud=DISCOVERY), ec_key, "ES384", "ec-1")
    await verifier.verify(bearer(token), DISCOVERY)
    token = sign(claims(aud=DISCOVERY), ec_key, "ES384", "ec-1")
    await expect(verifier, bearer(token), "bad-audience", AUD)


async def test_lowercase_bearer_scheme_accepted(verifier, ec_key):
    await verifier.verify("bearer " + sign(claims(), ec_key, "ES384", "ec-1"), AUD)


async def test_no_kid_single_key_accepted(verifier, ec_key):
    await verifier.verify(bearer(sign(claims(), ec_key, "ES384", None)), AUD)


async def test_jku_equal_to_configured_url_accepted(verifier, rsa_key, jwks_mock):
    token = sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1", jku=JWKS_URL)
    await verifier.verify(bearer(token), AUD)


# ------------------------------------------------------------------------------------ header shapes


async def test_missing_header(verifier):
    await expect(verifier, None, "missing-token")
    await expect(verifier, "   ", "missing-token")


async def test_not_bearer(verifier, ec_key):
    await expect(verifier, "Basic dXNlcjpwYXNz", "missing-token")
    await expect(verifier, "Bearer", "missing-token")
    await expect(verifier, "Bearer a.b.c extra", "malformed-token")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "!!!.@@@.###",
        b64url(b"[1,2]") + ".e30.",
        b64url(b'{"alg":"ES384"}') + ".bm90IGpzb24.x",
    ],
)
async def test_garbage_token(verifier, token):
    with pytest.raises(AuthError) as info:
        await verifier.verify(bearer(token), AUD)
    assert info.value.category in {"malformed-token", "unsupported-algorithm"}
    assert token not in str(info.value)


async def test_garbage_token_is_malformed(verifier):
    await expect(verifier, bearer("not-a-jwt"), "malformed-token")
    await expect(verifier, bearer(b64url(b'{"alg":"ES384"}') + ".bm90IGpzb24.x"), "malformed-token")


# -------------------------------------------------------------------------------------------- claims


async def test_expired(verifier, ec_key):
    now = int(time.time())
    token = sign(claims(exp=now - 120, iat=now - 400), ec_key, "ES384", "ec-1")
    await expect(verifier, bearer(token), "expired")


async def test_expired_within_leeway_accepted(verifier, ec_key):
    now = int(time.time())
    await verifier.verify(bearer(sign(claims(exp=now - 5, iat=now - 60), ec_key, "ES384", "ec-1")), AUD)


async def test_iat_in_future_beyond_leeway(verifier, ec_key):
    now = int(time.time())
    token = sign(claims(iat=now + 120, exp=now + 400), ec_key, "ES384", "ec-1")
    await expect(verifier, bearer(token), "not-yet-valid")


async def test_iat_in_future_within_leeway_accepted(verifier, ec_key):
    now = int(time.time())
    await verifier.verify(bearer(sign(claims(iat=now + 10), ec_key, "ES384", "ec-1")), AUD)


async def test_lifetime_too_long(verifier, ec_key):
    now = int(time.time())
    token = sign(claims(exp=now + 7 * 24 * 3600), ec_key, "ES384", "ec-1")
    await expect(verifier, bearer(token), "expired")


async def test_injected_clock_drives_time_checks(clients, http, ec_key):
    now = int(time.time())
    fake_now = [float(now + 10_000)]
    v = JwtVerifier(clients, http, clock=lambda: fake_now[0])
    token = sign(claims(), ec_key, "ES384", "ec-1")
    await expect(v, bearer(token), "expired")
    fake_now[0] = float(now)
    await v.verify(bearer(token), AUD)


async def test_wrong_aud(verifier, ec_key):
    await expect(verifier, bearer(sign(claims(aud="https://evil.example.org/"), ec_key, "ES384", "ec-1")),
                 "bad-audience")
    await expect(verifier, bearer(sign(claims(aud=[AUD + "/"]), ec_key, "ES384", "ec-1")), "bad-audience")


async def test_audience_list_argument(verifier, ec_key):
    token = sign(claims(aud="http://internal:8080/cds-services/mbc-palliative-care"), ec_key, "ES384", "ec-1")
    await verifier.verify(bearer(token), [AUD, "http://internal:8080/cds-services/mbc-palliative-care"])


async def test_unknown_iss(verifier, ec_key):
    await expect(verifier, bearer(sign(claims(iss="https://stranger.example"), ec_key, "ES384", "ec-1")),
                 "unknown-issuer")


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud"])
async def test_missing_claim(verifier, ec_key, claim):
    token = sign(claims(**{claim: None}), ec_key, "ES384", "ec-1")
    err = await expect(verifier, bearer(token), "missing-claim")
    assert claim in str(err)


async def test_missing_iss(verifier, ec_key):
    await expect(verifier, bearer(sign(claims(iss=None), ec_key, "ES384", "ec-1")), "missing-claim")


async def test_replayed_jti(verifier, ec_key):
    token = sign(claims(), ec_key, "ES384", "ec-1")
    await verifier.verify(bearer(token), AUD)
    await expect(verifier, bearer(token), "replayed-jti")
    # same jti in a freshly signed token is a replay too
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    token2 = sign(claims(jti=jti), ec_key, "ES384", "ec-1")
    await expect(verifier, bearer(token2), "replayed-jti")


async def test_rejected_token_does_not_consume_jti(verifier, ec_key):
    payload = claims()
    await expect(verifier, bearer(sign(payload, ec_key, "ES384", "ec-1")), "bad-audience", DISCOVERY)
    await verifier.verify(bearer(sign(payload, ec_key, "ES384", "ec-1")), AUD)


# ----------------------------------------------------------------------------------- keys and algs


async def test_signed_by_other_key_same_kid(verifier, ec_key_other):
    await expect(verifier, bearer(sign(claims(), ec_key_other, "ES384", "ec-1")), "bad-signature")


async def test_tampered_payload(verifier, ec_key):
    h, _, s = sign(claims(), ec_key, "ES384", "ec-1").split(".")
    forged = b64url(json.dumps(claims(iss=ISS_INLINE, tenant="other")).encode())
    await expect(verifier, bearer(f"{h}.{forged}.{s}"), "bad-signature")


async def test_alg_none(verifier):
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "ec-1"}).encode())
    body = b64url(json.dumps(claims()).encode())
    await expect(verifier, bearer(f"{header}.{body}."), "unsupported-algorithm")
    header = b64url(json.dumps({"alg": "none"}).encode())
    await expect(verifier, bearer(f"{header}.{body}."), "unsupported-algorithm")


@pytest.mark.parametrize("alg,digest", [("HS256", hashlib.sha256), ("HS384", hashlib.sha384),
                                        ("HS512", hashlib.sha512)])
async def test_hmac_signed_with_public_key_pem(rsa_key, http, jwks_mock, alg, digest):
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64url(json.dumps(claims(ISS_URL)).encode())
    signing_input = f"{header}.{body}".encode()
    sig = b64url(hmac.new(pem, signing_input, digest).digest())
    _, route = jwks_mock
    clients = [TrustedClient(iss=ISS_URL, jwks_url=JWKS_URL, jwks=None)]
    # even with HS* "allowed" by a careless caller, configuration refuses it
    with pytest.raises(ValueError):
        JwtVerifier(clients, http, algorithms=("RS384", alg))
    v = JwtVerifier(clients, http)
    await expect(v, bearer(f"{header}.{body}.{sig}"), "unsupported-algorithm")
    assert route.call_count == 0  # refused before any key was looked up


async def test_alg_not_configured(verifier):
    p256 = ec.generate_private_key(ec.SECP256R1())
    await expect(verifier, bearer(sign(claims(), p256, "ES256", "ec-1")), "unsupported-algorithm")


async def test_alg_header_does_not_match_key_type(clients, http, ec_key, rsa_key, jwks_mock):
    # RS384 header on the issuer whose only key is EC P-384: no key fits
    v = JwtVerifier(clients, http)
    await expect(v, bearer(sign(claims(), rsa_key, "RS384", "ec-1")), "unknown-key")


async def test_unknown_kid_inline(verifier, ec_key):
    await expect(verifier, bearer(sign(claims(), ec_key, "ES384", "nope")), "unknown-key")


async def test_no_kid_with_several_keys_rejected(http, ec_key, ec_key_other):
    jwks = {"keys": [public_jwk(ec_key, "a", "ES384"), public_jwk(ec_key_other, "b", "ES384")]}
    v = JwtVerifier([TrustedClient(ISS_INLINE, None, jwks)], http)
    await expect(v, bearer(sign(claims(), ec_key, "ES384", None)), "unknown-key")


async def test_jku_elsewhere_is_never_fetched_and_the_key_still_comes_from_the_registration(
        verifier, rsa_key, jwks_mock):
    mock, route = jwks_mock
    evil = mock.get("https://evil.example.org/jwks.json").mock(
        return_value=httpx.Response(200, json={"keys": [public_jwk(rsa_key, "rsa-1", "RS384")]})
    )
    # Signed with the registered key: a jku naming another URL is not by itself a refusal (contract v2) ...
    token = sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1", jku="https://evil.example.org/jwks.json")
    await verifier.verify(bearer(token), AUD)
    assert not evil.called and route.call_count == 1


async def test_attacker_key_behind_jku_is_refused_without_fetch(verifier, rsa_key_rotated, jwks_mock):
    mock, route = jwks_mock
    evil = mock.get("https://evil.example.org/jwks.json").mock(
        return_value=httpx.Response(200, json={"keys": [public_jwk(rsa_key_rotated, "evil-1", "RS384")]})
    )
    # ... but the key is looked up by kid among the registered keys only: the attacker's key never counts.
    token = sign(claims(ISS_URL), rsa_key_rotated, "RS384", "evil-1", jku="https://evil.example.org/jwks.json")
    await expect(verifier, bearer(token), "unknown-key")
    token = sign(claims(ISS_URL), rsa_key_rotated, "RS384", "rsa-1", jku="https://evil.example.org/jwks.json")
    await expect(verifier, bearer(token), "bad-signature")
    assert not evil.called


async def test_jku_on_inline_issuer_is_never_fetched(verifier, ec_key, ec_key_other):
    with respx.mock(assert_all_called=False) as mock:
        evil = mock.get("https://evil.example.org/jwks.json").mock(return_value=httpx.Response(200, json={}))
        token = sign(claims(), ec_key, "ES384", "ec-1", jku="https://evil.example.org/jwks.json")
        await verifier.verify(bearer(token), AUD)
        token = sign(claims(), ec_key_other, "ES384", "ec-1", jku="https://evil.example.org/jwks.json")
        await expect(verifier, bearer(token), "bad-signature")
        assert not evil.called


async def test_jku_allow_list_refuses_other_urls(http, ec_key):
    allowed = "https://ehr.example.com/.well-known/jwks.json"
    client = TrustedClient(iss=ISS_INLINE, jwks={"keys": [public_jwk(ec_key, "ec-1", "ES384")]}, jku=(allowed,))
    v = JwtVerifier([client], http)
    await v.verify(bearer(sign(claims(), ec_key, "ES384", "ec-1", jku=allowed)), AUD)
    await v.verify(bearer(sign(claims(), ec_key, "ES384", "ec-1")), AUD)  # no jku: nothing to compare
    token = sign(claims(), ec_key, "ES384", "ec-1", jku="https://evil.example.org/jwks.json")
    await expect(v, bearer(token), "unknown-key")


def test_jku_allow_list_in_the_clients_file(tmp_path: Path, ec_key):
    path = tmp_path / "clients.json"
    jwks = {"keys": [public_jwk(ec_key, "ec-1", "ES384")]}
    path.write_text(json.dumps([{"iss": ISS_INLINE, "jwks": jwks, "jku": "https://ehr.example.com/jwks"},
                                {"iss": ISS_URL, "jwks": jwks, "jku": [JWKS_URL, "https://b.example/j"]}]))
    one, two = load_clients(path)
    assert one.jku == ("https://ehr.example.com/jwks",) and two.jku == (JWKS_URL, "https://b.example/j")
    for bad in (["ftp://x"], [1], {"u": 1}):
        path.write_text(json.dumps([{"iss": ISS_INLINE, "jwks": jwks, "jku": bad}]))
        with pytest.raises(ValueError, match="jku"):
            load_clients(path)


# ------------------------------------------------------------------------------------- JWKS fetching


async def test_jwks_cached(verifier, rsa_key, jwks_mock):
    _, route = jwks_mock
    await verifier.verify(bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), AUD)
    await verifier.verify(bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), AUD)
    assert route.call_count == 1


async def test_jwks_ttl_expiry_refetches(clients, http, rsa_key, jwks_mock):
    _, route = jwks_mock
    now = [time.time()]
    v = JwtVerifier(clients, http, jwks_ttl=300, clock=lambda: now[0])
    await v.verify(bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), AUD)
    now[0] += 301
    payload = claims(ISS_URL, iat=int(now[0]), exp=int(now[0]) + 60)
    await v.verify(bearer(sign(payload, rsa_key, "RS384", "rsa-1")), AUD)
    assert route.call_count == 2


async def test_unknown_kid_triggers_one_refetch_key_rotation(
    clients, http, rsa_key, rsa_key_rotated, jwks_mock
):
    _, route = jwks_mock
    now = [time.time()]
    v = JwtVerifier(clients, http, jwks_ttl=300, clock=lambda: now[0])
    await v.verify(bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), AUD)
    assert route.call_count == 1
    # a minute later (cache still fresh) the EHR rotates: the JWKS now serves rsa-2 too
    now[0] += 60
    route.mock(return_value=httpx.Response(200, json={"keys": [
        public_jwk(rsa_key, "rsa-1", "RS384"), public_jwk(rsa_key_rotated, "rsa-2", "RS384")]}))
    fresh = claims(ISS_URL, iat=int(now[0]), exp=int(now[0]) + 60)
    await v.verify(bearer(sign(fresh, rsa_key_rotated, "RS384", "rsa-2")), AUD)
    assert route.call_count == 2
    fresh = claims(ISS_URL, iat=int(now[0]), exp=int(now[0]) + 60)
    await v.verify(bearer(sign(fresh, rsa_key_rotated, "RS384", "rsa-2")), AUD)
    assert route.call_count == 2  # the refreshed set is cached


async def test_unknown_kid_refetch_rate_limited(clients, http, rsa_key, jwks_mock):
    _, route = jwks_mock
    now = [time.time()]
    v = JwtVerifier(clients, http, jwks_refetch_interval=10, clock=lambda: now[0])
    await v.verify(bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), AUD)
    for _ in range(5):
        await expect(v, bearer(sign(claims(ISS_URL), rsa_key, "RS384", "bogus")), "unknown-key")
    assert route.call_count == 1  # the first refetch is within 10 s of the initial fetch
    now[0] += 11
    await expect(v, bearer(sign(claims(ISS_URL), rsa_key, "RS384", "bogus")), "unknown-key")
    assert route.call_count == 2
    await expect(v, bearer(sign(claims(ISS_URL), rsa_key, "RS384", "bogus")), "unknown-key")
    assert route.call_count == 2


async def test_concurrent_verifies_fetch_once(verifier, rsa_key, jwks_mock):
    _, route = jwks_mock
    tokens = [sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1") for _ in range(10)]
    results = await asyncio.gather(*(verifier.verify(bearer(t), AUD) for t in tokens))
    assert len(results) == 10
    assert route.call_count == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, text="boom"),
        httpx.Response(404),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json=["not", "a", "jwks"]),
        httpx.Response(302, headers={"Location": "https://evil.example.org/jwks.json"}),
    ],
)
async def test_jwks_endpoint_failure(verifier, rsa_key, jwks_mock, response):
    _, route = jwks_mock
    route.mock(return_value=response)
    token = sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")
    err = await expect(verifier, bearer(token), "jwks-unavailable")
    assert token not in str(err)


async def test_jwks_network_error(verifier, rsa_key, jwks_mock):
    _, route = jwks_mock
    route.mock(side_effect=httpx.ConnectError("refused"))
    await expect(verifier, bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), "jwks-unavailable")


async def test_jwks_recovers_after_failure_backoff(clients, http, rsa_key, jwks_mock):
    _, route = jwks_mock
    good = route.return_value
    route.mock(return_value=httpx.Response(500))
    now = [time.time()]
    v = JwtVerifier(clients, http, jwks_failure_backoff=2, clock=lambda: now[0])
    await expect(v, bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), "jwks-unavailable")
    await expect(v, bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), "jwks-unavailable")
    assert route.call_count == 1  # backoff: no hammering of a failing endpoint
    route.mock(return_value=good)
    now[0] += 3
    await v.verify(bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), AUD)
    assert route.call_count == 2


async def test_fetched_private_members_are_ignored(http, rsa_key):
    # A JWKS that (wrongly) publishes the private key still only yields a public key for verification.
    private_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key))
    private_jwk.update({"kid": "rsa-1", "alg": "RS384"})
    private_jwk.pop("key_ops", None)
    with respx.mock() as mock:
        mock.get(JWKS_URL).mock(return_value=httpx.Response(200, json={"keys": [private_jwk]}))
        v = JwtVerifier([TrustedClient(ISS_URL, JWKS_URL, None)], http)
        await v.verify(bearer(sign(claims(ISS_URL), rsa_key, "RS384", "rsa-1")), AUD)


# ------------------------------------------------------------------------------------- replay cache


async def test_replay_cache_expiry_and_bound():
    now = [1000.0]
    cache = InMemoryReplayCache(max_entries=3, clock=lambda: now[0])
    assert isinstance(cache, ReplayCache)
    assert not await cache.seen("i", "a", 1100)
    assert await cache.seen("i", "a", 1100)
    assert not await cache.seen("j", "a", 1100)  # per issuer
    now[0] = 1101
    assert not await cache.seen("i", "a", 1200)  # purged after expiry
    for jti in ("b", "c", "d", "e"):
        assert not await cache.seen("i", jti, 1300)
    assert len(cache) <= 3


async def test_custom_replay_cache_used(clients, http, ec_key):
    calls: list[tuple[str, str, int]] = []

    class Recorder:
        async def seen(self, iss: str, jti: str, exp: int) -> bool:
            calls.append((iss, jti, exp))
            return False

    v = JwtVerifier(clients, http, replay_cache=Recorder())
    payload = claims()
    await v.verify(bearer(sign(payload, ec_key, "ES384", "ec-1")), AUD)
    assert calls == [(ISS_INLINE, payload["jti"], payload["exp"] + 30)]


# -------------------------------------------------------------------------------- config and errors


def test_load_clients(tmp_path: Path, ec_key):
    f = tmp_path / "clients.json"
    f.write_text(json.dumps([
        {"iss": ISS_URL, "jwks_url": JWKS_URL},
        {"iss": ISS_INLINE, "jwks": {"keys": [public_jwk(ec_key, "ec-1", "ES384")]}},
    ]))
    loaded = load_clients(f)
    assert [c.iss for c in loaded] == [ISS_URL, ISS_INLINE]
    assert loaded[0].jwks_url == JWKS_URL and loaded[0].jwks is None
    assert loaded[1].jwks is not None and loaded[1].jwks_url is None
    assert load_clients(str(f)) == loaded


@pytest.mark.parametrize(
    "content,fragment",
    [
        ("{not json", "not valid JSON"),
        ('{"iss": "x"}', "JSON list"),
        ('["x"]', "must be an object"),
        ('[{"jwks_url": "https://a/j"}]', "iss"),
        ('[{"iss": "a"}]', "exactly one"),
        ('[{"iss": "a", "jwks_url": "https://a/j", "jwks": {"keys": []}}]', "exactly one"),
        ('[{"iss": "a", "jwks_uri": "https://a/j"}]', "unknown field"),
        ('[{"iss": "a", "jwks_url": "ftp://a/j"}]', "http(s)"),
        ('[{"iss": "a", "jwks": {"keys": []}}]', "non-empty"),
        ('[{"iss": "a", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}]', "only public"),
        ('[{"iss": "a", "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}}]', "usable"),
        ('[{"iss": "a", "jwks_url": "https://a/j"}, {"iss": "a", "jwks_url": "https://b/j"}]', "duplicate"),
    ],
)
def test_load_clients_bad_files(tmp_path: Path, content: str, fragment: str):
    f = tmp_path / "clients.json"
    f.write_text(content)
    with pytest.raises(ValueError) as info:
        load_clients(f)
    assert fragment in str(info.value)


def test_load_clients_private_key_refused(tmp_path: Path, ec_key):
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key))
    f = tmp_path / "clients.json"
    f.write_text(json.dumps([{"iss": "a", "jwks": {"keys": [jwk]}}]))
    with pytest.raises(ValueError) as info:
        load_clients(f)
    assert "private" in str(info.value)
    assert jwk["d"] not in str(info.value)


def test_load_clients_missing_file(tmp_path: Path):
    with pytest.raises(ValueError, match="cannot read"):
        load_clients(tmp_path / "nope.json")


async def test_error_messages_never_contain_token(verifier, ec_key, ec_key_other):
    cases = [
        sign(claims(), ec_key_other, "ES384", "ec-1"),
        sign(claims(aud="https://evil.example.org/"), ec_key, "ES384", "ec-1"),
        sign(claims(iss="https://stranger.example"), ec_key, "ES384", "ec-1"),
    ]
    for token in cases:
        with pytest.raises(AuthError) as info:
            await verifier.verify(bearer(token), AUD)
        text = str(info.value) + repr(info.value)
        for part in token.split("."):
            assert part not in text
        assert "stranger" not in text and "evil" not in text


def test_auth_error_category_checked():
    with pytest.raises(ValueError):
        AuthError("nonsense", "x")
    assert AuthError("missing-token", "x").www_authenticate.startswith("Bearer")
