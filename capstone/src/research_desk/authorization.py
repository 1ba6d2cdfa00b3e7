"""Lesson 5, going further: real authorization (JWT access tokens and scopes per tool).

A static bearer token (transport.py) says "whoever holds this string may do everything". An
OAuth 2.1 deployment splits the job: an authorization server (the issuer) signs short-lived
access tokens, and the desk, a *protected resource*, only checks them. A token is a JWT whose
signature the desk verifies against the issuer's published public keys (its JWKS), and whose
claims say who issued it (`iss`), for which resource (`aud`: the desk's own URL, so a token
minted for another service is worthless here), until when (`exp`, `nbf`), and what it allows
(`scope`, space-separated). The desk never sees a password and never shares a secret with the
issuer: rotating keys, revoking clients and running logins are the issuer's work.

Scopes make one desk safe for several kinds of callers: a token with `desk:read` may read, but
`save_note` also needs `desk:write`. A refused call must tell the client how to do better: HTTP
403 with `WWW-Authenticate: Bearer error="insufficient_scope", scope="..."` and the link to the
protected-resource metadata, so the client can ask the issuer for a token with more scope (a
"step-up") and retry. A missing, forged or expired token is a 401 instead (the SDK answers it).

Where the scope rule runs: the SDK authenticates the HTTP request before any MCP code runs, and
its own `AuthSettings(required_scopes=...)` applies to the whole endpoint, not per tool. A
2026-07-28 request names its method and tool in the `Mcp-Method` and `Mcp-Name` headers (the SDK
refuses a request whose headers disagree with its body, so a gateway may route on them); a
legacy request carries them only in its JSON body. `ToolScopeGuard` (given) reads the body, which
holds for both eras, and asks `missing_scopes` (yours) before the request goes any further.

What `course check 5` holds you to (the "going further" checks):

* `JwtVerifier.verify_token` answers an `AccessToken` for a token signed by one of the issuer's
  keys with the configured algorithms only (never the algorithm the token names), from the
  configured issuer, for the configured audience, not expired and already valid; `None` for
  anything else (forged, unsigned, HMAC-signed with the public key, expired, wrong `aud` or `iss`,
  not a JWT at all), and it never raises. `scopes` are the token's `scope` claim split on spaces;
  `client_id` is its `client_id` claim (or `sub` without one); `subject` is `sub`; `resource` is
  the audience it was checked against; `expires_at` is `exp`.
* `missing_scopes` names the scopes a tool needs that were not granted, comparing whole scope
  names (never substrings); a tool the rule does not name needs the rule's default.
* `insufficient_scope` is a 403 whose `WWW-Authenticate` challenge names the scopes to ask for and
  the protected-resource metadata.
"""

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import anyio.to_thread
import jwt
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_ALGORITHMS = ("RS256",)
"""What the issuer signs with. Pinned by the desk: a token's own `alg` header is never trusted."""


class JwtVerifier:
    """A `TokenVerifier` (mcp.server.auth.provider) for JWT access tokens from one issuer.

    The issuer's public keys are fetched from `jwks_url` by PyJWT's `PyJWKClient`, which caches
    them (`cache_seconds`) and picks the one named by the token's `kid`; a key the issuer has just
    added is fetched on first sight. The fetch is blocking, so it runs in a worker thread.
    `leeway` forgives that much clock difference between issuer and desk.
    """

    def __init__(self, *, jwks_url: str, issuer: str, audience: str,
                 algorithms: Sequence[str] = DEFAULT_ALGORITHMS, leeway: float = 30,
                 cache_seconds: float = 300) -> None:
        if not (jwks_url and issuer and audience and algorithms):
            raise ValueError("a JwtVerifier needs a JWKS URL, an issuer, an audience and at least one algorithm")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=cache_seconds, timeout=5)

    async def verify_token(self, token: str) -> AccessToken | None:
        """An `AccessToken` for a valid token from this issuer for this audience; `None` otherwise."""
        # TODO(lesson-5): find the signing key for the token's `kid` (self._keys, in a worker
        #   thread), decode with the pinned algorithms, this audience and issuer and
        #   the leeway, requiring exp, iss, aud and sub; any failure (PyJWTError, or
        #   bytes that are not a JWT at all) is None. Describe a good token as an
        #   AccessToken (scopes: `scope` split on spaces).
        raise NotImplementedError("TODO(lesson-5): write verify_token")


def missing_scopes(tool: str, granted: Collection[str], required: Mapping[str, Sequence[str]],
                   default: Sequence[str] = ()) -> list[str]:
    """The scopes calling `tool` needs that are not in `granted`, in the rule's order ([]: allowed).

    `required` maps tool names to the scopes each needs; a tool it does not name needs `default`.
    """
    # TODO(lesson-5): look the tool up (falling back to `default`) and keep each needed scope that
    #   is not one of the granted ones, comparing whole names.
    raise NotImplementedError("TODO(lesson-5): write missing_scopes")


def insufficient_scope(scopes: Sequence[str], resource_metadata: str | None) -> Response:
    """The 403 that tells a client which scopes to ask its issuer for (RFC 6750 section 3.1).

    `scopes` are all the scopes the refused call needs (a client asks for them at once);
    `resource_metadata` is the URL of this desk's protected-resource metadata, if it has one.
    """
    # TODO(lesson-5): answer 403 with a JSON body {"error": "insufficient_scope", ...} and a WWW-
    #   Authenticate header: `Bearer error="insufficient_scope", scope="<space-
    #   separated>"`, plus `resource_metadata="<url>"` when there is one.
    raise NotImplementedError("TODO(lesson-5): write insufficient_scope")


# --- Given: the guard around the MCP endpoint, the server options, a local issuer -------------


def called_tools(body: bytes) -> list[str]:
    """The tool names a JSON-RPC body calls (`tools/call`), for one message or a batch of them."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return []  # not JSON: the SDK answers it with a parse error, no tool runs
    messages = parsed if isinstance(parsed, list) else [parsed]
    names = []
    for message in messages:
        params = message.get("params") if isinstance(message, dict) else None
        if isinstance(params, dict) and message.get("method") == "tools/call":
            names.append(str(params.get("name")))
    return names


class ToolScopeGuard:
    """ASGI middleware between the SDK's authentication and its MCP endpoint: scopes per tool.

    It runs after the bearer token was verified (so `scope["user"]` says what was granted) and
    before the SDK's `RequireAuthMiddleware` (which answers 401 to a request with no valid token:
    the guard leaves those alone). For a POST it reads the body, up to `max_body_bytes`, and
    refuses a `tools/call` whose tool needs scopes the token lacks; the body is then handed on
    unchanged. A larger body is passed on unread: the SDK refuses it for its size anyway.
    """

    def __init__(self, app: ASGIApp, *, required: Mapping[str, Sequence[str]], default: Sequence[str] = (),
                 resource_metadata: str | None = None, max_body_bytes: int = 4 * 1024 * 1024) -> None:
        self.app = app
        self.required = dict(required)
        self.default = list(default)
        self.resource_metadata = resource_metadata
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if scope["type"] != "http" or scope["method"] != "POST" or not isinstance(user, AuthenticatedUser):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        size, complete = 0, False
        while size <= self.max_body_bytes:
            message = await receive()
            received.append(message)
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = message["type"] == "http.request"
                break
        if complete:
            body = b"".join(m.get("body", b"") for m in received)
            for tool in called_tools(body):
                if missing_scopes(tool, user.scopes, self.required, self.default):
                    needed = self.required.get(tool, self.default)
                    await insufficient_scope(needed, self.resource_metadata)(scope, receive, send)
                    return

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)


def jwt_auth_options(*, jwks_url: str, issuer: str, resource_url: str,
                     algorithms: Sequence[str] = DEFAULT_ALGORITHMS) -> dict[str, Any]:
    """Keyword arguments for `MCPServer(...)` that accept JWT access tokens from `issuer`.

    The protected-resource metadata (RFC 9728) then names `issuer` as this desk's authorization
    server, and the SDK also refuses a token whose resource is not `resource_url`.
    """
    verifier = JwtVerifier(jwks_url=jwks_url, issuer=issuer, audience=resource_url, algorithms=algorithms)
    auth = AuthSettings(issuer_url=issuer, resource_server_url=resource_url,  # type: ignore[arg-type]
                        validate_token_resource=True)
    return {"token_verifier": verifier, "auth": auth}


def protect_tools(app: ASGIApp, *, required: Mapping[str, Sequence[str]], resource_url: str,
                  default: Sequence[str] = (), path: str = "/mcp") -> ASGIApp:
    """Put a `ToolScopeGuard` around the MCP endpoint at `path` of an app built by `create_app`.

    The SDK authenticates in app-wide middleware and checks "is there a valid token" inside the
    endpoint's route, so the guard goes exactly there: around the route's endpoint. `app` may be
    the Starlette app itself or middleware wrapped around it (each keeping the next as `.app`, as
    Starlette's own middleware classes do); the same `app` is returned, its endpoint guarded.
    """
    inner: Any = app
    for _ in range(32):  # middleware around middleware around ... the Starlette app
        if isinstance(inner, Starlette) or inner is None:
            break
        inner = getattr(inner, "app", None)
    if not isinstance(inner, Starlette):
        raise ValueError("no Starlette app inside this one (each middleware should keep the next as `.app`)")
    for route in inner.router.routes:
        if isinstance(route, Route) and route.path == path:
            metadata = str(build_resource_metadata_url(AnyHttpUrl(resource_url)))
            route.app = ToolScopeGuard(route.app, required=required, default=default, resource_metadata=metadata)
            return app
    raise ValueError(f"no MCP endpoint at {path!r} in this app")


class LocalIssuer:
    """A stand-in authorization server for notebooks: an RSA key made at start, its JWKS on loopback.

    It publishes what a real issuer publishes for resource servers (its public keys at
    `/.well-known/jwks.json` and RFC 8414 metadata naming them) and signs tokens with PyJWT, but
    it runs no login or token endpoint: `mint` hands a token straight to the caller, which is what
    a real issuer would do at the end of an OAuth flow. Serve `app()` (e.g. with transport's
    `LocalServer`), then set `url` to where it is served before minting.
    """

    def __init__(self, *, kid: str = "desk-demo-1") -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.kid = kid
        self.url = ""
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def jwks(self) -> dict[str, Any]:
        """The public half of the signing key, as a JSON Web Key Set."""
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def app(self) -> Starlette:
        """The issuer's public routes: the JWKS and its authorization-server metadata."""
        async def keys(request: Any) -> Response:
            return JSONResponse(self.jwks())

        async def metadata(request: Any) -> Response:
            return JSONResponse({"issuer": self.url, "jwks_uri": self.jwks_url,
                                 "response_types_supported": ["code"]})

        return Starlette(routes=[Route("/.well-known/jwks.json", keys),
                                 Route("/.well-known/oauth-authorization-server", metadata)])

    def mint(self, *, subject: str, audience: str, scopes: Sequence[str] = (), lifetime: float = 300,
             **claims: Any) -> str:
        """A signed access token for `subject`, valid for `audience` for `lifetime` seconds."""
        import time

        now = int(time.time())
        payload = {"iss": self.url, "sub": subject, "aud": audience, "iat": now, "nbf": now,
                   "exp": now + int(lifetime), "scope": " ".join(scopes), "client_id": subject, **claims}
        return jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid})
