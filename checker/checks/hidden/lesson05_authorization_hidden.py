"""Lesson 5, going further, instructor-only: the authorization requirements with inputs students never saw.

Left out of the student release and run by `course grade`. Each re-tests what a visible check of
`lesson05_authorization.py` enforces, with other data: a token for several audiences, one with no
scope at all, a key the JWKS does not hold, another RSA algorithm than the pinned one, scopes that
differ only in case, and a default scope that guards the everyday tool over HTTP. A submission
that meets the visible requirements passes these too.
"""

from __future__ import annotations

import random
import secrets
import time

import jwt
import pytest

from checker.checks.kit.eras import MODES
from checker.checks.support.lesson05 import raw, why
from checker.checks.support.lesson05_authorization import Issuer, call_raw, challenge, scope_names, scoped_app, verifier
from checker.checks.support.lesson05_authorization import issuer as issuer  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("hidden: tokens for several audiences, and without scopes, are described right", points=1,
       hint="Pass the audience to jwt.decode (PyJWT accepts a token whose aud list holds it); no scope claim "
            "means no scopes.")
async def test_other_genuine_tokens(target: Target, issuer: Issuer) -> None:
    audience = f"https://desk-{secrets.token_hex(3)}.example/mcp"
    check_verifier = verifier(target, issuer, audience)
    scopes = scope_names(random.randint(1, 3))
    several = issuer.claims(audience, scopes, aud=[f"https://other-{secrets.token_hex(2)}.example/mcp", audience])
    got = await check_verifier.verify_token(issuer.sign(several, key=1))
    assert got is not None and list(got.scopes) == scopes, (
        f"a token whose aud list holds this desk's URL should be accepted with scopes {scopes}, got {got!r}")
    bare = issuer.claims(audience, scope=None)
    got = await check_verifier.verify_token(issuer.sign(bare))
    assert got is not None and list(got.scopes) == [], f"a token without a scope claim should have no scopes: {got!r}"


@check("hidden: unknown keys, other algorithms and other audiences are refused", points=2,
       hint="Look the key up by kid in the JWKS, pin the algorithms, and check aud, iss and exp with PyJWT.")
async def test_other_bad_tokens(target: Target, issuer: Issuer) -> None:
    audience = f"https://desk-{secrets.token_hex(3)}.example/mcp"
    check_verifier = verifier(target, issuer, audience)
    claims = issuer.claims(audience, scope_names(2))
    now = int(time.time())
    bad = {
        "signed with a kid the JWKS does not publish": jwt.encode(claims, issuer.rogue, algorithm="RS256",
                                                                  headers={"kid": f"k-{secrets.token_hex(4)}"}),
        "signed with RS512 (not the pinned RS256)": jwt.encode(claims, issuer.keys[0], algorithm="RS512",
                                                               headers={"kid": issuer.kids[0]}),
        "for a list of other audiences": issuer.mint(audience, aud=[f"https://x-{secrets.token_hex(2)}.example/mcp"]),
        "expired 5 minutes ago": issuer.mint(audience, exp=now - 300, iat=now - 900, nbf=now - 900),
        "from an issuer with a similar URL": issuer.mint(audience, iss=f"{issuer.url}.evil.example"),
        "without sub": issuer.mint(audience, sub=None, client_id=None),
        "empty": "",
    }
    for what, token in bad.items():
        try:
            got = await check_verifier.verify_token(token)
        except Exception as exc:  # noqa: BLE001 - reported as the failure it is
            pytest.fail(f"verify_token raised {type(exc).__name__} on a token {what}: answer None instead")
        assert got is None, f"a token {what} was accepted"


@check("hidden: scope names differing in case or repeated are compared whole", points=1,
       hint="Compare exact scope names; order the answer as the rule lists them.")
async def test_missing_scopes_other_cases(target: Target) -> None:
    missing_scopes = target.attr("authorization", "missing_scopes")
    first, second, third = scope_names(3)
    tool = f"tool_{secrets.token_hex(3)}"
    required = {tool: [third, first, second]}
    cases = [([first.upper(), second, second], [third, first]), ([third, third], [first, second]),
             ([f" {first}", second, third], [first]), ([first, second, third], [])]
    for granted, expected in cases:
        got = list(missing_scopes(tool, granted, required, []))
        assert got == expected, f"missing_scopes({tool!r}, {granted}) with {required} should be {expected}, got {got}"
    assert list(missing_scopes(f"x{tool}", [], required, [])) == [], "a tool with an empty default needs nothing"


@check("hidden: the default scope guards every tool the rule does not name, over HTTP (both eras)", points=2,
       hint="A tool outside the rule needs the default scopes; a call without them gets the 403 challenge too.")
async def test_default_scope_over_http(target: Target, issuer: Issuer) -> None:
    host = f"desk-{secrets.token_hex(3)}.example"
    resource = f"https://{host}/mcp"
    read, count = scope_names(2)
    app = scoped_app(target, issuer, host=host, origin=f"https://app-{secrets.token_hex(2)}.example",
                     required={"count_to": [count]}, default=[read])
    counter_only = issuer.mint(resource, [count])
    async with raw() as http, target.http(app) as url:
        for mode, era in MODES.items():
            refused = await call_raw(http, url, host, counter_only, "connection_info", {}, mode)
            assert refused.status_code == 403 and challenge(refused).get("scope", "").split() == [read], (
                f"[{era}] connection_info needs the default scope {read}; a token without it should get 403 with "
                f"scope=\"{read}\", got {why(refused.status_code)} {refused.headers.get('www-authenticate')!r}")
            allowed = await call_raw(http, url, host, counter_only, "count_to", {"n": 1}, mode)
            assert allowed.status_code == 200, (
                f"[{era}] count_to needs only {count}, which the token has, but got {why(allowed.status_code)}")
