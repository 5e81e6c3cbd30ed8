"""Google-signed OIDC tokens (RS256 JWTs), as a Cloud Pub/Sub push subscription sends them.

Checks only against a configured key set (`jwks`) and the injected clock: nothing is fetched on the
request path. Sources: cloud.google.com/pubsub/docs/authenticate-push-subscriptions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors._schemes import equal
from connectors.base import InboundRequest, VerificationFailed

ALGORITHM = "RS256"
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")


def parse_jwks(
    jwks: dict[str, Any],
) -> tuple[dict[str, rsa.RSAPublicKey], tuple[str, rsa.RSAPrivateKey] | None]:
    """(public keys by kid, the first private signing key if any) of a JWK set.

    ValueError says what is wrong.
    """
    found: dict[str, rsa.RSAPublicKey] = {}
    signing: tuple[str, rsa.RSAPrivateKey] | None = None
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ValueError('jwks must be a JWK set: {"keys": [...]}')
    for index, jwk in enumerate(keys):
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not jwk.get("kid"):
            raise ValueError(f"jwks.keys[{index}] is not an RSA key with a kid")
        if jwk.get("alg", ALGORITHM) != ALGORITHM:
            raise ValueError(f"jwks.keys[{index}].alg is {jwk.get('alg')!r}, expected RS256")
        try:
            key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
        except jwt.PyJWTError as exc:
            raise ValueError(f"jwks.keys[{index}]: {exc}") from None
        if isinstance(key, rsa.RSAPrivateKey):
            # Only offline test key sets carry private parts: they let send-test sign.
            signing = signing or (str(jwk["kid"]), key)
            key = key.public_key()
        found[str(jwk["kid"])] = key
    return found, signing


def bearer(request: InboundRequest) -> str:
    value = (request.header("authorization") or "").strip()
    if not value:
        raise VerificationFailed(
            "missing authorization header (is OIDC auth enabled on the push subscription?)"
        )
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise VerificationFailed("authorization header is not a Bearer token")
    return token.strip()


def verified_claims(token: str, key_of: Callable[[str], rsa.RSAPublicKey | None]) -> dict[str, Any]:
    """The claims of `token` once its signature verifies with the key `key_of(kid)` (None: not trusted)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise VerificationFailed("malformed JWT") from None
    # Pin the algorithm before choosing a key: a token must not pick how it is checked.
    if header.get("alg") != ALGORITHM:
        raise VerificationFailed("JWT is not RS256")
    key = key_of(str(header.get("kid") or ""))
    if key is None:
        raise VerificationFailed("JWT key id is not in the trusted key set")
    try:
        # Time claims are checked below against the injected clock, not PyJWT's wall clock.
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": ["aud", "iss", "email", "iat", "exp"],
            },
        )
    except jwt.InvalidSignatureError:
        raise VerificationFailed("JWT signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise VerificationFailed(f"JWT has no {exc.claim!r} claim") from None
    except jwt.PyJWTError:
        raise VerificationFailed("invalid JWT") from None


def check_claims(
    claims: dict[str, Any],
    audience: str,
    now: float,
    *,
    issuers: list[str],
    service_account_email: str,
    leeway_seconds: int,
) -> None:
    """VerificationFailed unless the verified `claims` are for `audience`, from one of `issuers` and the
    service account, and current at `now` within `leeway_seconds`."""
    aud = claims["aud"]
    audiences = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and equal(a, audience) for a in audiences):
        raise VerificationFailed("JWT audience is not this source's audience")
    if claims["iss"] not in issuers:
        raise VerificationFailed("JWT issuer is not Google")
    email = claims["email"]
    if not isinstance(email, str) or not equal(email.lower(), service_account_email.strip().lower()):
        raise VerificationFailed("JWT is not from the configured service account")
    if claims.get("email_verified") not in (True, "true"):
        raise VerificationFailed("JWT email is not verified")
    iat, exp, nbf = claims["iat"], claims["exp"], claims.get("nbf", claims["iat"])
    # NaN compares false both ways, so an `exp` of NaN would never expire: finite numbers only.
    if not all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in (iat, exp, nbf)
    ):
        raise VerificationFailed("JWT time claims are not numbers")
    leeway = leeway_seconds
    if now + leeway < max(iat, nbf):
        raise VerificationFailed("JWT issued in the future (timestamp outside leeway)")
    if now >= exp + leeway:
        raise VerificationFailed("JWT expired (timestamp outside leeway)")


def sign_test_token(claims: dict[str, Any], signing_key: tuple[str, rsa.RSAPrivateKey] | None) -> str:
    """A token for send-test, signed with the test key set's private key or else a throwaway key."""
    # Only Google holds the real keys. An offline test key set with private parts signs for real;
    # otherwise a throwaway key shows the token path and is answered 401 (see the docs page).
    kid, key = signing_key or (
        "hookhub-send-test",
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
