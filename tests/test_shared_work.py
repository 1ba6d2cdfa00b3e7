"""What the runner shares to be fast must not change what a check sees.

- one default TLS context per warm process (`checker.host.warmup`): every HTTP client gets the
  same verifying context, and a CA store chosen through SSL_CERT_FILE is still read as asked;
- a uvicorn served by `serve_asgi` stops gracefully (its lifespan's shutdown runs) when asked.

Timing is the business of `bench/`, never of a test: these pin behaviour only.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_http_clients_share_one_verifying_tls_context() -> None:
    out = _python("""
        import ssl, httpx2
        from checker.host.warmup import warm_up
        warm_up()
        a, b = httpx2.AsyncClient(), httpx2.AsyncClient()
        ctx = [c._transport._pool._ssl_context for c in (a, b)]
        print(ctx[0] is ctx[1], ctx[0].verify_mode == ssl.CERT_REQUIRED, ctx[0].check_hostname,
              len(ctx[0].get_ca_certs()) > 0 or ctx[0].cert_store_stats()["x509_ca"] > 0)
        unverified = httpx2.AsyncClient(verify=False)._transport._pool._ssl_context
        print(unverified is not ctx[0], unverified.verify_mode == ssl.CERT_NONE)
    """)
    assert out.split() == ["True"] * 6


def test_a_ca_store_named_by_the_environment_is_still_read(tmp_path: Path) -> None:
    """A client made after SSL_CERT_FILE names another bundle trusts that bundle, not the first one."""
    bundle = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().openssl_cafile
    if not bundle or not os.path.isfile(bundle):
        pytest.skip("this machine has no CA bundle file to name")
    text = Path(bundle).read_text(encoding="ascii", errors="replace")
    end = "-----END CERTIFICATE-----"
    if end not in text:
        pytest.skip(f"{bundle} holds no PEM certificate")
    one = tmp_path / "one.pem"
    one.write_text(text[text.index("-----BEGIN CERTIFICATE-----"):text.index(end) + len(end)] + "\n")
    out = _python(f"""
        import os, httpx2
        from checker.host.warmup import warm_up
        warm_up()
        first = httpx2.AsyncClient()._transport._pool._ssl_context
        os.environ["SSL_CERT_FILE"] = {str(one)!r}
        second = httpx2.AsyncClient()._transport._pool._ssl_context
        third = httpx2.AsyncClient()._transport._pool._ssl_context
        print(first is not second, second is third, second.cert_store_stats()["x509_ca"],
              first.cert_store_stats()["x509_ca"] > 1)
    """, env={"SSL_CERT_FILE": bundle})
    assert out.split() == ["True", "True", "1", "True"], out


def test_a_served_app_still_shuts_down_gracefully() -> None:
    out = _python("""
        import anyio
        from contextlib import asynccontextmanager
        from starlette.applications import Starlette
        from checker.host.serving import serve_asgi
        events = []

        @asynccontextmanager
        async def lifespan(app):
            events.append("up")
            yield
            await anyio.sleep(0.05)
            events.append("down")

        async def main():
            async with serve_asgi(Starlette(lifespan=lifespan)):
                events.append("served")
            print(" ".join(events))

        anyio.run(main)
    """)
    assert out.split() == ["up", "served", "down"]
