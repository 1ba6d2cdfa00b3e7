"""Run a command inside a submission's sandbox as if it were started right here.

    python -I -S relay.py ZYGOTE_SOCKET PROCS_FILES LEDGER -- COMMAND [ARG ...]

A check starts this, not the command (`Target.command` builds the line), so every way of running
a subprocess works unchanged: `subprocess.Popen`, `anyio.open_process`, the SDK's stdio client.
The relay hands its stdin, stdout, stderr, environment and working folder to a spawner inside the
sandbox, puts the spawner into the check's resource groups (PROCS_FILES, `-` for none) before
the command starts, passes on the signals it receives, and exits as the command did. The CPU
seconds the command used are added to the LEDGER file (`-` for none), since the check's own usage
does not include a process the zygote started.

Standard library only, run isolated (-I -S): it starts in milliseconds and nothing on the import
path can change what it does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_HEADER = struct.Struct(">I")


def _frame(message: object) -> bytes:
    body = json.dumps(message).encode()
    return _HEADER.pack(len(body)) + body


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the sandbox closed the connection")
        data += chunk
    return data


def _receive(sock: socket.socket) -> tuple[dict, int]:
    """The next message and, from the kernel, the pid of the process that sent it."""
    header, ancillary, _, _ = sock.recvmsg(4, socket.CMSG_SPACE(12))
    pid = 0
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", data[:12])[0]
    if not header:
        raise ConnectionError("the sandbox closed the connection")
    header += _exactly(sock, 4 - len(header))
    (length,) = _HEADER.unpack(header)
    if length > 1 << 20:
        raise ConnectionError("an oversized message from the sandbox")
    message = json.loads(_exactly(sock, length))
    return (message if isinstance(message, dict) else {}), pid


def _note_cpu(ledger: str, seconds: object) -> None:
    """Add the command's CPU seconds to the check's ledger, if it keeps one."""
    if ledger != "-" and isinstance(seconds, int | float) and not isinstance(seconds, bool):
        with contextlib.suppress(OSError), open(ledger, "a") as handle:
            handle.write(f"{float(seconds)}\n")


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("usage: relay.py ZYGOTE_SOCKET PROCS_FILES LEDGER -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    path, groups, ledger, command = argv[0], argv[1], argv[2], argv[4:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        sock.connect(path)
        request = {"kind": "spawn", "argv": command, "env": dict(os.environ), "cwd": os.getcwd()}
        socket.send_fds(sock, [_frame(request)], [0, 1, 2])
        hello, pid = _receive(sock)
        if "error" in hello or not pid:
            raise OSError(hello.get("error") or "the sandbox did not start the command")
        for procs in filter(None, groups.split(os.pathsep)) if groups != "-" else ():
            with open(procs, "w") as handle:
                handle.write(str(pid))
        sock.sendall(_frame({"go": True}))
    except (OSError, ValueError) as exc:
        print(f"could not run {command[0]} in the sandbox: {exc}", file=sys.stderr)
        return 127
    # The command has its own copies now: let it alone decide when its pipes close.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    def forward(number: int, _frame_: object) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(_frame({"signal": number}))

    for number in FORWARDED:
        signal.signal(number, forward)
    try:
        while True:
            message, _ = _receive(sock)
            _note_cpu(ledger, message.get("cpu"))
            if "error" in message:
                return 127
            if "exit" in message:
                return int(message["exit"])
            if "signal" in message:
                signum = int(message["signal"])
                if signum in FORWARDED:
                    signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)  # end as the command ended: killed by that signal
                return 128 + number
    except (OSError, ValueError):
        return 137  # the sandbox went away: the command was killed with it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
