"""Lesson 8: the command that starts the desk: `research-desk` or `python -m research_desk`.

A packaged server is started by someone else: a host such as Claude Desktop or Claude Code
spawns the command, passes settings in environment variables, and talks to it over stdin and
stdout. So the command must

* take its settings from, in rising precedence: built-in defaults, `RESEARCH_DESK_*`
  environment variables (what a host config's `env` sets), then command-line flags;
* answer `--help` and `--version` without starting a server;
* refuse a bad setting with one line on stderr and exit code 2, before serving anything;
* never write to stdout on its own: on stdio, stdout *is* the protocol stream, and one stray
  line breaks the client's parser. Logs go to stderr.

Importing this module has no side effects (the course's checker imports it); `main()` runs
only when the module is executed or the `research-desk` script is called. The SDK is imported
only when a server is built, so `--help`, `--version` and a refused setting answer at once.

This entry point serves a small desk (list and read documents under the allowed roots) built
from given code only; the capstone (lesson 9) wires every lesson's tools into it.

What `course check 8` holds you to (with this module, the project's pyproject.toml):

* The `mcp` requirement admits the version you run (2.3) and has a floor and a ceiling: no 1.x
  (it lacks `MCPServer`), no 3.0 or later. `[project.scripts]` maps `research-desk` to
  `research_desk.__main__:main`.
* `uv build` makes `research_desk-<__version__>-py3-none-any.whl`, holding every module of the
  package and nothing else, and an sdist holding `pyproject.toml` and `src/research_desk` but never
  a `.env`, a notebook or bytecode that sits in the project folder.
* The wheel, installed in a fresh environment, gives a `research-desk` command that serves
  `list_documents` for `--root DIR` over stdio to clients of both eras, reporting the package's
  version.
* `--version` prints exactly `research-desk <version>`; `--help` shows the usage of `research-desk`
  and names every option with its `RESEARCH_DESK_*` variable. Both exit 0 and start nothing.
* `load_settings`: with nothing set, stdio on 127.0.0.1:8000 at WARNING. Each variable
  (`RESEARCH_DESK_TRANSPORT`, `_HOST`, `_PORT`, `_ROOTS` split on `os.pathsep` only, `_LOG_LEVEL` in
  any case) applies when its flag is absent, and every flag (`--root` repeated replaces the roots)
  wins over its variable. Ports 1 and 65535 are valid, 0, 65536 and negatives are not; a root must
  be an existing folder (a file is refused); folder names keep their spaces, commas and accents. A bad
  value (flag or variable) exits with code 2, the argparse way.
* `configure_logging(level)` leaves the root logger exactly one handler, on stderr (calling it twice
  logs each record once, and an older handler stops), sets the root's level, and shows the level
  name and the logger's name on each line. Nothing goes to stdout.
* `python -m research_desk` on stdio writes only JSON-RPC to stdout, and at INFO logs one line on
  stderr saying what it serves. With the http transport (flag or variable) it serves Streamable
  HTTP at `/mcp` on the configured port, to clients of both eras. A bad setting stops it with exit
  code 2, nothing on stdout, and a last stderr line naming the flag, variable or folder to fix.
"""

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from research_desk import __version__
from research_desk.documents import scan_documents

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

PROG = "research-desk"
ENV_PREFIX = "RESEARCH_DESK_"
TRANSPORTS = ("stdio", "http")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

log = logging.getLogger("research_desk")


@dataclass(frozen=True)
class Settings:
    """Everything the command needs to start a server."""

    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    roots: tuple[Path, ...] = (Path("."),)
    log_level: str = "WARNING"


def build_parser() -> argparse.ArgumentParser:
    """The command line: --transport, --host, --port, --root (repeatable), --log-level, --version."""
    # BEGIN SOLUTION lesson-8: an ArgumentParser for prog PROG with --transport (TRANSPORTS),
    #   --host, --port (an int), --root DIR (repeatable), --log-level (LOG_LEVELS, any case) and
    #   --version printing "research-desk <version>"; leave every default None so load_settings can
    #   tell "not given" apart, and name the matching RESEARCH_DESK_* variable in each help text.
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a research workspace over MCP (stdio by default, or Streamable HTTP).",
        epilog="Each option can also be set with an environment variable (shown in brackets); "
               "a flag wins over the variable. Logs go to stderr: on stdio, stdout carries the protocol.",
    )
    parser.add_argument("--transport", choices=TRANSPORTS, type=str.lower,
                        help="how clients connect: stdio (a host starts this command) or http "
                             "[RESEARCH_DESK_TRANSPORT, default: stdio]")
    parser.add_argument("--host", help="address to listen on with --transport http "
                                       "[RESEARCH_DESK_HOST, default: 127.0.0.1]")
    parser.add_argument("--port", type=int, help="port to listen on with --transport http "
                                                 "[RESEARCH_DESK_PORT, default: 8000]")
    parser.add_argument("--root", dest="roots", action="append", type=Path, metavar="DIR",
                        help="a folder whose documents may be served; repeat for several "
                             f"[RESEARCH_DESK_ROOTS, separated by {os.pathsep!r}, default: the current folder]")
    parser.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper,
                        help="how much to log, to stderr [RESEARCH_DESK_LOG_LEVEL, default: WARNING]")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser
    # END SOLUTION


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from defaults, then RESEARCH_DESK_* variables in `environ`, then the flags in `argv`.

    A bad value (flag or variable) ends the program the argparse way: usage and a one-line error
    on stderr, exit code 2.
    """
    # BEGIN SOLUTION lesson-8: parse argv with build_parser(); read RESEARCH_DESK_TRANSPORT, _HOST,
    #   _PORT, _ROOTS (split on os.pathsep only) and _LOG_LEVEL (any case) from environ; a flag wins
    #   over its variable, a variable over the Settings default; reject a bad variable, a port
    #   outside 1-65535 (both ends valid) or a root that is not an existing folder with
    #   parser.error() naming the setting.
    parser = build_parser()
    args = parser.parse_args(list(argv))
    env = {key.removeprefix(ENV_PREFIX): value for key, value in environ.items()
           if key.startswith(ENV_PREFIX) and value.strip()}
    defaults = Settings()

    transport = args.transport or env.get("TRANSPORT", defaults.transport).strip().lower()
    if transport not in TRANSPORTS:
        parser.error(f"RESEARCH_DESK_TRANSPORT={transport!r} is not one of {', '.join(TRANSPORTS)}")
    log_level = args.log_level or env.get("LOG_LEVEL", defaults.log_level).strip().upper()
    if log_level not in LOG_LEVELS:
        parser.error(f"RESEARCH_DESK_LOG_LEVEL={log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    port = args.port
    if port is None:
        raw = env.get("PORT", str(defaults.port)).strip()
        if not raw.isdigit():
            parser.error(f"RESEARCH_DESK_PORT={raw!r} is not a port number")
        port = int(raw)
    if not 0 < port < 65536:
        parser.error(f"port {port} is outside 1-65535")
    if args.roots:
        roots = tuple(args.roots)
    elif "ROOTS" in env:
        roots = tuple(Path(part) for part in env["ROOTS"].split(os.pathsep) if part.strip())
    else:
        roots = defaults.roots
    for root in roots:
        if not root.is_dir():
            parser.error(f"the root folder {root} does not exist (check --root or RESEARCH_DESK_ROOTS)")
    return Settings(transport=transport, host=args.host or env.get("HOST", defaults.host).strip(),
                    port=port, roots=roots, log_level=log_level)
    # END SOLUTION


def configure_logging(level: str) -> None:
    """Send every log record to stderr at `level`; stdout stays free for the protocol."""
    # BEGIN SOLUTION lesson-8: replace whatever handlers the root logger has with one stream handler
    #   on stderr (never stdout) showing time, level, logger name and message, and set the root
    #   level.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # END SOLUTION


def create_server(settings: Settings) -> "MCPServer":
    """A small desk over the allowed roots: list and read their documents."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations

    roots = [root.resolve() for root in settings.roots]
    server = MCPServer("research-desk", version=__version__, log_level=settings.log_level,  # type: ignore[arg-type]
                       instructions="Look up documents in a research workspace.")

    def locate(name: str) -> Path | None:
        for root in roots:
            for path in scan_documents(root):
                if path.relative_to(root).as_posix() == name:
                    return path
        return None

    @server.tool(title="List documents", annotations=ToolAnnotations(read_only_hint=True))
    async def list_documents() -> list[str]:
        """Names of every document under the allowed roots, sorted."""
        return sorted({path.relative_to(root).as_posix() for root in roots for path in scan_documents(root)})

    @server.tool(title="Read a document", annotations=ToolAnnotations(read_only_hint=True))
    async def read_document(name: str) -> str:
        """The full text of one document, by the name list_documents gives."""
        path = locate(name)
        if path is None:
            raise ToolError(f"no document named {name!r}; call list_documents to see what exists")
        return path.read_text(encoding="utf-8", errors="replace")

    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the desk: `research-desk [options]`. Returns the exit code."""
    # BEGIN SOLUTION lesson-8: load the settings (argv defaults to sys.argv[1:], the environment to
    #   os.environ), configure logging, build the server, log one INFO line saying what is served
    #   (version, transport, roots), then run it over stdio or Streamable HTTP (host and port);
    #   print nothing.
    settings = load_settings(sys.argv[1:] if argv is None else argv, os.environ)
    configure_logging(settings.log_level)
    server = create_server(settings)
    where = f" on http://{settings.host}:{settings.port}/mcp" if settings.transport == "http" else ""
    log.info("research-desk %s serving %s over %s%s", __version__,
             ", ".join(str(root) for root in settings.roots), settings.transport, where)
    if settings.transport == "http":
        server.run(transport="streamable-http", host=settings.host, port=settings.port)
    else:
        server.run()
    return 0
    # END SOLUTION


if __name__ == "__main__":
    sys.exit(main())
