"""Lesson 5, going further: the checks' own issuer, forged tokens, and a desk that checks scopes.

The issuer is the check's, never the student's: RSA keys made when the checks module starts, their
JWKS served on loopback by a small threaded HTTP server (once per module), tokens signed with
PyJWT. Student code only ever sees its public keys, over HTTP, as a real issuer would publish them.
The desk is built from the SDK, transport.py's given tools and create_app, and authorization.py's
given `jwt_auth_options` and `protect_tools` around the student's verifier and scope rule.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import mmap
import os
import re
import secrets
import select
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from checker.checks.kit.eras import LEGACY
from checker.checks.support.lesson05 import ACCEPT, modern_headers, modern_request
from checker.target import Target

# Made once per run, when the runner imports this module, before it forks a process for each check:
# a 2048-bit key costs ~30 ms of CPU, and three per check were most of what these checks spent. A
# process forked here makes them on the other core while the runner goes on collecting the checks,
# warming up and starting the first checks (a thread would hold the interpreter's lock, and every
# fork would have to wait for it). It writes them into memory every later fork shares (an anonymous
# shared mapping) and then ends; a check that needs them waits for that end (the pipe's end of file).
# Student code never sees them (only the published public keys); every run makes new ones.
_KEY_COUNT = 3  # two published (a rotation), one never published
_shared = mmap.mmap(-1, 64 * 1024)  # MAP_SHARED | MAP_ANONYMOUS: the maker's writes reach every fork
_done, _maker_end = os.pipe()


def _make_keys() -> None:
    """In the key maker's process: three keys as length-prefixed DER, into the shared mapping."""
    data = b"".join(
        len(der).to_bytes(4, "big") + der
        for der in (rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            for _ in range(_KEY_COUNT)))
    _shared[:len(data)] = data


if (_go_between := os.fork()) == 0:  # which forks the maker and ends: nobody has the maker to reap
    try:
        if os.fork() == 0:
            os.close(_done)
            _make_keys()  # a failure leaves the mapping empty, which _keys() reports
    finally:
        os._exit(0)
os.waitpid(_go_between, 0)
os.close(_maker_end)  # so the pipe reads as ended once the maker has exited
_KEYS: list[RSAPrivateKey] = []


def _keys() -> list[RSAPrivateKey]:
    """The three keys, once the maker has written them (read in each check's process)."""
    if not _KEYS:
        ended, _, _ = select.select([_done], [], [], 30)
        if not ended or os.read(_done, 1) != b"" or not _shared[:4].strip(b"\0"):
            pytest.fail("the checks' signing keys could not be made (a problem of the course, not your code)")
        offset = 0
        for _ in range(_KEY_COUNT):
            size = int.from_bytes(_shared[offset:offset + 4], "big")
            key = serialization.load_der_private_key(_shared[offset + 4:offset + 4 + size], password=None,
                                                     unsafe_skip_rsa_key_validation=True)  # made above
            assert isinstance(key, RSAPrivateKey)
            _KEYS.append(key)
            offset += 4 + size
    return _KEYS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """An authorization server as resource servers see it: a JWKS on loopback, and signed tokens.

    Two published keys (an issuer rotating keys publishes both, and a verifier picks by `kid`), and
    one unpublished key under a published `kid`, for forgeries.
    """

    def __init__(self) -> None:
        self.kids = [f"k-{secrets.token_hex(4)}", f"k-{secrets.token_hex(4)}"]
        self.keys = _keys()[:2]
        self.rogue = _keys()[2]
        self.url = ""
        self._http: ThreadingHTTPServer | None = None

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks-{self.kids[0]}.json"

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in zip(self.kids, self.keys, strict=True):
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**public, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def claims(self, audience: str, scopes: Sequence[str] = (), **overrides: Any) -> dict[str, Any]:
        """A token's claims, valid for five minutes; an override of None leaves that claim out."""
        now = int(time.time())
        subject = f"user-{secrets.token_hex(3)}"
        claims = {"iss": self.url, "sub": subject, "aud": audience, "iat": now, "nbf": now, "exp": now + 300,
                  "scope": " ".join(scopes), "client_id": f"app-{secrets.token_hex(3)}", **overrides}
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any], *, key: int = 0) -> str:
        return jwt.encode(claims, self.keys[key], algorithm="RS256", headers={"kid": self.kids[key]})

    def mint(self, audience: str, scopes: Sequence[str] = (), **overrides: Any) -> str:
        return self.sign(self.claims(audience, scopes, **overrides))

    # -- forgeries: each carries the kid of a published key -------------------------------------

    def unsigned(self, claims: dict[str, Any]) -> str:
        """alg "none": no signature at all."""
        header = {"alg": "none", "typ": "JWT", "kid": self.kids[0]}
        return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."

    def hmac_with_public_key(self, claims: dict[str, Any]) -> str:
        """HS256 keyed with the issuer's public key (PEM), which anyone can read from the JWKS."""
        pem = self.keys[0].public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        head = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': self.kids[0]}).encode())}"
        signing_input = f"{head}.{_b64(json.dumps(claims).encode())}"
        return f"{signing_input}.{_b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"

    def rogue_signed(self, claims: dict[str, Any]) -> str:
        """Signed by a key the issuer never published, under a published kid."""
        return jwt.encode(claims, self.rogue, algorithm="RS256", headers={"kid": self.kids[0]})

    def tampered(self, claims: dict[str, Any], **changes: Any) -> str:
        """A genuine token whose claims were changed after signing (the signature kept)."""
        head, _, signature = self.sign(claims).split(".")
        return f"{head}.{_b64(json.dumps({**claims, **changes}).encode())}.{signature}"

    # -- serving ----------------------------------------------------------------------------------

    def start(self) -> None:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                found = self.path == issuer.jwks_url.removeprefix(issuer.url)
                body = json.dumps(issuer.jwks() if found else {"error": "not found"}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        # A short poll interval: shutdown() waits for serve_forever to look up, 0.5 s by default,
        # and every check's fork stops its own issuer.
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    """The checks module's issuer, serving its JWKS on loopback for as long as the module runs."""
    made = Issuer()
    made.start()
    try:
        yield made
    finally:
        made.stop()


def verifier(target: Target, issuer: Issuer, audience: str) -> Any:
    """The student's JwtVerifier, configured for the check's issuer and `audience`."""
    return target.attr("authorization", "JwtVerifier")(jwks_url=issuer.jwks_url, issuer=issuer.url,
                                                       audience=audience)


# --- a desk with scopes per tool --------------------------------------------------------------


def scope_names(count: int) -> list[str]:
    """`count` distinct random scope names shaped like real ones (`desk-ab12:read`)."""
    prefix = f"desk-{secrets.token_hex(2)}"
    return [f"{prefix}:{secrets.token_hex(3)}" for _ in range(count)]


def scoped_app(target: Target, issuer: Issuer, *, host: str, origin: str, required: dict[str, list[str]],
               default: list[str]) -> Any:
    """The lesson's small desk (connection_info, count_to) accepting the issuer's tokens for
    `https://<host>/mcp`, with `required` scopes per tool and `default` for the others."""
    resource = f"https://{host}/mcp"
    options = target.attr("authorization", "jwt_auth_options")(jwks_url=issuer.jwks_url, issuer=issuer.url,
                                                               resource_url=resource)
    server = target.library("mcp.server.mcpserver").MCPServer(f"desk-{secrets.token_hex(2)}", log_level="WARNING",
                                                              **options)
    server.tool()(target.attr("transport", "connection_info"))
    server.tool()(target.attr("transport", "count_to"))
    app = target.attr("transport", "create_app")(server, allowed_hosts=[host], allowed_origins=[origin])
    return target.attr("authorization", "protect_tools")(app, required=required, default=default,
                                                         resource_url=resource)


def call_body(tool: str, arguments: dict[str, Any], *, modern: bool) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    if modern:
        return modern_request("tools/call", params, id=7)
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}


async def call_raw(http: httpx2.AsyncClient, url: str, host: str, token: str | None, tool: str,
                   arguments: dict[str, Any], mode: str, **extra: str) -> httpx2.Response:
    """One tools/call over plain HTTP, as a modern request or inside a fresh legacy session."""
    authorization = f"Bearer {token}" if token else None
    if mode != "legacy":
        headers = modern_headers(host, "tools/call", tool, authorization, **extra)
        return await http.post(url, json=call_body(tool, arguments, modern=True), headers=headers)
    base = {"Host": host, "Accept": ACCEPT, "Content-Type": "application/json", **extra,
            **({"Authorization": authorization} if authorization else {})}
    opened = await http.post(url, headers=base, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "check", "version": "1"}}})
    session = opened.headers.get("mcp-session-id")
    if opened.status_code != 200 or not session:
        return opened  # refused before any session: the caller judges this answer
    in_session = {**base, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
    await http.post(url, headers=in_session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return await http.post(url, headers=in_session, json=call_body(tool, arguments, modern=False))


def challenge(response: httpx2.Response) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Bearer k="v", ...` header ({} without one)."""
    value = response.headers.get("www-authenticate", "")
    if not value.lower().startswith("bearer"):
        return {}
    return {key.lower(): found for key, found in re.findall(r'([A-Za-z_]+)="([^"]*)"', value)}
