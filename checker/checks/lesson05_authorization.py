"""Lesson 5, going further: real authorization (JWT access tokens, scopes per tool, CORS).

The issuer is the check's own (support/lesson05_authorization.py): keys made when this module
starts, the JWKS served on loopback, tokens signed with PyJWT. The verifier checks hand the
student's `JwtVerifier` genuine tokens and attacks; the HTTP checks serve the desk with uvicorn
and read status codes and challenges from raw requests in both protocol eras. Scope names,
subjects, audiences and which tool needs what are random on every run.
"""

from __future__ import annotations

import random
import secrets
import time

import pytest

from checker.checks.kit.eras import MODES
from checker.checks.support.lesson05 import raw, why
from checker.checks.support.lesson05_authorization import Issuer, call_raw, challenge, scope_names, scoped_app, verifier
from checker.checks.support.lesson05_authorization import issuer as issuer  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


def _resource() -> str:
    return f"https://desk-{secrets.token_hex(3)}.example/mcp"


@check("a genuine token becomes an AccessToken with its caller, scopes and expiry", points=2,
       hint="Get the signing key for the token's kid from the JWKS client, then jwt.decode with your pinned "
            "algorithms, audience and issuer. client_id is the `client_id` claim (else `sub`), scopes are "
            "`scope` split on spaces, expires_at is `exp`, resource is the audience you checked.")
async def test_jwt_verifier_accepts_genuine_tokens(target: Target, issuer: Issuer) -> None:
    audience = _resource()
    check_verifier = verifier(target, issuer, audience)
    scopes = scope_names(random.randint(2, 4))
    for key in (0, 1):  # both published keys: an issuer rotating keys signs with either
        claims = issuer.claims(audience, scopes)
        got = await check_verifier.verify_token(issuer.sign(claims, key=key))
        assert got is not None, (
            f"a token signed by the issuer's {'first' if key == 0 else 'second'} published key (kid "
            f"{issuer.kids[key]}), for the right audience and issuer, was refused")
        expected = {"scopes": scopes, "client_id": claims["client_id"], "subject": claims["sub"],
                    "expires_at": claims["exp"]}
        described = {"scopes": list(got.scopes), "client_id": got.client_id, "subject": got.subject,
                     "expires_at": got.expires_at}
        for field, value in expected.items():
            assert described[field] == value, (
                f"the AccessToken's {field} should be {value!r} (from the token's claims), got {described[field]!r}")
        assert got.resource == audience, f"resource should be the audience {audience!r}, got {got.resource!r}"
    no_client = issuer.claims(audience, scopes, client_id=None)
    got = await check_verifier.verify_token(issuer.sign(no_client))
    assert got is not None and got.client_id == no_client["sub"], (
        "a token without a client_id claim should be described with client_id = its `sub`")


@check("forged tokens are refused: unsigned, HMAC with the public key, unknown key, altered claims", points=3,
       hint="Pass `algorithms=` your pinned list to jwt.decode (never the token's own `alg`), verify the signature "
            "with the key from the JWKS, and return None (never raise) for anything PyJWT refuses, including "
            "text that is not a JWT at all.")
async def test_jwt_verifier_refuses_forgeries(target: Target, issuer: Issuer) -> None:
    audience = _resource()
    check_verifier = verifier(target, issuer, audience)
    scopes = scope_names(2)
    claims = issuer.claims(audience, scopes)
    attacks = {
        'alg "none" (no signature)': issuer.unsigned(claims),
        "HS256 keyed with the issuer's public key": issuer.hmac_with_public_key(claims),
        "signed by a key the issuer never published": issuer.rogue_signed(claims),
        "claims altered after signing (more scope)": issuer.tampered(claims, scope=" ".join([*scopes, "admin"])),
        "not a JWT": secrets.token_urlsafe(random.randint(8, 40)),
        "three dots of garbage": f"{secrets.token_hex(4)}.{secrets.token_hex(4)}.{secrets.token_hex(4)}",
        "non-ASCII text": f"é{secrets.token_hex(3)}☃",
    }
    for attack, token in attacks.items():
        try:
            got = await check_verifier.verify_token(token)
        except Exception as exc:  # noqa: BLE001 - reported as the failure it is
            pytest.fail(f"verify_token raised {type(exc).__name__} on a forged token ({attack}): answer None instead")
        assert got is None, f"a forged token was accepted: {attack}"


@check("expired, not-yet-valid, wrong-audience and wrong-issuer tokens are refused", points=3,
       hint="Give jwt.decode the audience (this desk's URL) and the issuer, and require exp, iss, aud and sub "
            "(options={'require': [...]}): PyJWT then checks exp and nbf (with your leeway) and refuses a token "
            "that leaves a claim out.")
async def test_jwt_verifier_checks_claims(target: Target, issuer: Issuer) -> None:
    audience = _resource()
    check_verifier = verifier(target, issuer, audience)
    now = int(time.time())
    late = random.randint(120, 3600)  # well beyond any sensible leeway
    bad: dict[str, dict[str, object]] = {
        f"expired {late} s ago": {"exp": now - late, "iat": now - late - 300, "nbf": now - late - 300},
        f"valid only in {late} s (nbf)": {"nbf": now + late, "exp": now + late + 300},
        "for another resource (aud)": {"aud": _resource()},
        "for this desk's host with another path (aud)": {"aud": audience.removesuffix("/mcp") + "/admin"},
        "from another issuer (iss)": {"iss": f"https://idp-{secrets.token_hex(3)}.example"},
        "without exp": {"exp": None},
        "without aud": {"aud": None},
        "without iss": {"iss": None},
    }
    for what, overrides in bad.items():
        got = await check_verifier.verify_token(issuer.mint(audience, scope_names(1), **overrides))
        assert got is None, f"a token {what} was accepted: it must be refused"
    fresh = await check_verifier.verify_token(issuer.mint(audience, scope_names(1)))
    assert fresh is not None, "a genuine, current token for this desk was refused"


@check("missing_scopes compares whole scope names and falls back to the default", points=2,
       hint="Look the tool up in `required` (or use `default` when it is not there) and keep each needed scope "
            "that is not exactly one of the granted ones: `desk:write` is not granted by `desk:write-drafts`.")
async def test_missing_scopes_rule(target: Target) -> None:
    missing_scopes = target.attr("authorization", "missing_scopes")
    read, write, admin = scope_names(3)
    tool, other, unnamed = (f"tool_{secrets.token_hex(3)}" for _ in range(3))
    required = {tool: [read, write], other: []}
    default = [admin]
    cases = [
        (tool, [read, write], []), (tool, [read], [write]), (tool, [], [read, write]),
        (tool, [write, read, admin], []), (tool, [f"{read}x", write[:-1], f"{write} {read}"], [read, write]),
        (other, [], []), (unnamed, [read, write], [admin]), (unnamed, [f"{admin}-lite"], [admin]),
        (unnamed, [admin], []),
    ]
    for name, granted, expected in cases:
        got = list(missing_scopes(name, granted, required, default))
        which = "a tool the rule does not name" if name == unnamed else f"{name!r}"
        assert got == expected, (
            f"missing_scopes({which}, granted={granted}) with required={required}, default={default} "
            f"should be {expected}, got {got}")


@check("a call without its tool's scope gets 403 insufficient_scope with the scope to ask for; a step-up works "
       "(both eras)", points=4,
       hint="insufficient_scope answers 403 with `WWW-Authenticate: Bearer error=\"insufficient_scope\", "
            "scope=\"<what the tool needs>\", resource_metadata=\"<url>\"`: a 401 would tell the client its token "
            "is bad, when it only needs more scope.")
async def test_scopes_enforced_over_http(target: Target, issuer: Issuer) -> None:
    host = f"desk-{secrets.token_hex(3)}.example"
    resource = f"https://{host}/mcp"
    read, count, extra = scope_names(3)
    needs = [count, extra] if random.random() < 0.5 else [count]
    app = scoped_app(target, issuer, host=host, origin=f"https://app-{secrets.token_hex(2)}.example",
                     required={"count_to": needs}, default=[read])
    reader = issuer.mint(resource, [read])
    almost = issuer.mint(resource, [read, *(f"{scope}-lite" for scope in needs)])
    stepped = issuer.mint(resource, [read, *needs])
    async with raw() as http, target.http(app) as url:
        for mode, era in MODES.items():
            listed = await call_raw(http, url, host, reader, "connection_info", {}, mode)
            assert listed.status_code == 200, (
                f"[{era}] connection_info needs only the default scope, which the token has, but got "
                f"{why(listed.status_code)}")
            for token, what in ((reader, "only the default scope"), (almost, "look-alike scopes")):
                refused = await call_raw(http, url, host, token, "count_to", {"n": 1}, mode)
                assert refused.status_code == 403, (
                    f"[{era}] count_to needs {needs}; a token with {what} should get 403, got {refused.status_code}")
                said = challenge(refused)
                assert said.get("error") == "insufficient_scope", (
                    f"[{era}] the 403 should carry WWW-Authenticate: Bearer error=\"insufficient_scope\", got "
                    f"{refused.headers.get('www-authenticate')!r}")
                assert set(said.get("scope", "").split()) == set(needs), (
                    f"[{era}] the challenge's scope= should name what count_to needs ({' '.join(needs)}), got "
                    f"{said.get('scope')!r}")
                metadata = f"https://{host}/.well-known/oauth-protected-resource"
                assert said.get("resource_metadata", "").startswith(metadata), (
                    f"[{era}] the challenge should link the protected-resource metadata, got {said!r}")
            done = await call_raw(http, url, host, stepped, "count_to", {"n": 1}, mode)
            assert done.status_code == 200 and '"isError":false' in done.text.replace(" ", ""), (
                f"[{era}] after a step-up (a token with {needs}) count_to should run, got {why(done.status_code)}: "
                f"{done.text[:200]!r}")
            expired = issuer.mint(resource, [read, *needs], exp=int(time.time()) - 3600)
            unwelcome: list[tuple[str | None, str]] = [
                (None, "no token"), (issuer.mint(_resource(), [read, *needs]), "another desk's token"),
                (expired, "an expired token")]
            for bad_token, what in unwelcome:
                answer = await call_raw(http, url, host, bad_token, "count_to", {"n": 1}, mode)
                assert answer.status_code == 401 and challenge(answer).get("resource_metadata"), (
                    f"[{era}] {what} should get 401 with a Bearer challenge (never 403, which means 'valid but not "
                    f"enough'), got {why(answer.status_code)}")


@check("a browser on an allowed origin can step up: preflight without a token, challenge readable", points=2,
       hint="CORS stays lesson 5's: an allowed origin's preflight is answered without a token, other origins get "
            "no CORS headers, and the 403's WWW-Authenticate is exposed to the page, or it cannot see what to ask for.")
async def test_browser_can_step_up(target: Target, issuer: Issuer) -> None:
    host, origin = f"desk-{secrets.token_hex(3)}.example", f"https://app-{secrets.token_hex(3)}.example"
    read, write = scope_names(2)
    app = scoped_app(target, issuer, host=host, origin=origin, required={"count_to": [write]}, default=[read])
    preflight = {"Host": host, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type, mcp-method, mcp-name"}
    async with raw() as http, target.http(app) as url:
        allowed = await http.options(url, headers={**preflight, "Origin": origin})
        stranger = await http.options(url, headers={**preflight, "Origin": f"https://evil-{secrets.token_hex(3)}.example"})
        refused = await call_raw(http, url, host, issuer.mint(f"https://{host}/mcp", [read]), "count_to", {"n": 1},
                                 "auto", Origin=origin)
    assert allowed.status_code == 200 and allowed.headers.get("access-control-allow-origin") == origin, (
        f"a preflight from the allowed origin {origin} should be answered 200 for that origin without a token, "
        f"got {why(allowed.status_code)}, allow-origin {allowed.headers.get('access-control-allow-origin')!r}")
    assert not stranger.headers.get("access-control-allow-origin"), (
        "a preflight from an origin that is not allowed got Access-Control-Allow-Origin: "
        f"{stranger.headers.get('access-control-allow-origin')!r}")
    exposed = [h.strip().lower() for h in refused.headers.get("access-control-expose-headers", "").split(",")]
    assert refused.status_code == 403 and "www-authenticate" in exposed, (
        f"the browser's call without the scope should get 403 with WWW-Authenticate exposed to the page, got "
        f"{why(refused.status_code)}, exposed {exposed}")
