"""A small TOML writer for the two files the quiz writes (the standard library only reads TOML).

It writes strings, string arrays and one or two levels of tables, which is all the answers
file and the hashed key need, and the output round-trips through `tomllib`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def string(value: str) -> str:
    """A TOML basic string (JSON's escapes are all valid TOML; DEL must be escaped too)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def key(name: str) -> str:
    return name if _BARE.match(name) else string(name)


def value(item: object) -> str:
    if isinstance(item, str):
        return string(item)
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return repr(item)
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TypeError(f"cannot write {type(item).__name__} as TOML")


def header(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines()) + "\n"


def dumps_key(questions: dict[str, dict[str, object]]) -> str:
    """The hashed key: `[questions.<id>]` tables, long arrays one item a line, `why` maps as sub-tables."""
    out: list[str] = ["format = 1\n"]
    for qid, entry in questions.items():
        out.append(f"\n[questions.{key(qid)}]\n")
        tables: list[tuple[str, dict[str, str]]] = []
        for name, item in entry.items():
            if isinstance(item, dict):
                tables.append((name, item))
            elif isinstance(item, list) and len(item) > 1:
                out.append(f"{key(name)} = [\n" + "".join(f"  {value(v)},\n" for v in item) + "]\n")
            else:
                out.append(f"{key(name)} = {value(item)}\n")
        for name, table in tables:
            out.append(f"\n[questions.{key(qid)}.{key(name)}]\n")
            out.extend(f"{key(k)} = {value(v)}\n" for k, v in table.items())
    return "".join(out)


def dumps_sections(sections: Mapping[str, Mapping[str, object]]) -> str:
    """Plain `[section]` tables of scalar or array values, in the given order."""
    out: list[str] = []
    for section, entries in sections.items():
        out.append(f"[{key(section)}]\n")
        out.extend(f"{key(k)} = {value(v)}\n" for k, v in entries.items())
        out.append("\n")
    return "".join(out).rstrip("\n") + "\n"
