"""A fresh Ubuntu root for testing the Gradescope autograder as Gradescope runs it.

Gradescope builds an image from the autograder zip on its Ubuntu 22.04 or 24.04 base by running
`setup.sh` as root, then runs `run_autograder` as root in a Docker container whose default
seccomp profile forbids namespaces. This module makes the nearest thing this machine allows:

- `ubuntu_root(suite, dest)`: a minimal Ubuntu tree made by debootstrap from archive.ubuntu.com,
  its Release file checked against the Ubuntu archive key pinned here by fingerprint (the key
  itself comes from the ubuntu-keyring package, which is only trusted for that one key). The
  tree is cached as a tarball, so only the first run downloads it.
- `run(root, command)`: a command in that root, in a mount namespace of its own (so nothing it
  mounts outlives it), with /proc and /dev but no /sys (so no cgroups, as in a container), and,
  with `container=True`, under a seccomp filter that refuses namespaces the way Docker's default
  profile does. The entering is done by this file run as a script with the system Python,
  whose python3-seccomp binding installs the filter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MIRROR = "http://archive.ubuntu.com/ubuntu"
KEYRING_DEB = f"{MIRROR}/pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb"
ARCHIVE_KEY = "F6ECB3762474EDA9D21B7022871920D1991BC93C"  # Ubuntu Archive Automatic Signing Key (2018)
CACHE = Path(os.environ.get("COURSE_TEST_CACHE", "/var/cache/course-tests"))
# Where this machine tells programs to find its certificate bundle: passed into the root as is.
TLS_ENV = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
SYSTEM_PYTHON = "/usr/bin/python3"


def missing_tools() -> str:
    """Why this machine cannot make a fresh root (empty when it can)."""
    if os.geteuid() != 0:
        return "needs root (chroot, mounts)"
    for tool in ("debootstrap", "unshare", "gpg", "curl", "tar"):
        if not shutil.which(tool):
            return f"needs {tool}"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True)
    if probe.returncode != 0:
        return "needs the system Python's seccomp binding (apt-get install python3-seccomp)"
    reach = subprocess.run(["curl", "-sfI", "--max-time", "15", f"{MIRROR}/dists/jammy/Release"], capture_output=True)
    if reach.returncode != 0:
        return f"cannot reach {MIRROR}"
    return ""


def _pinned_keyring(work: Path) -> Path:
    """A keyring holding only the pinned archive key, taken from the ubuntu-keyring package."""
    deb = work / "ubuntu-keyring.deb"
    subprocess.run(["curl", "-sfo", str(deb), KEYRING_DEB], check=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "keyring")], check=True)
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    full = work / "keyring" / "usr/share/keyrings/ubuntu-archive-keyring.gpg"
    pinned = work / "pinned.gpg"
    exported = subprocess.run(["gpg", "--homedir", str(home), "--no-default-keyring", "--keyring", str(full),
                               "--export", ARCHIVE_KEY], capture_output=True, check=True).stdout
    if not exported:
        raise RuntimeError(f"the ubuntu-keyring package does not hold the archive key {ARCHIVE_KEY}")
    pinned.write_bytes(exported)
    return pinned


def _base_tarball(suite: str) -> Path:
    tarball = CACHE / f"ubuntu-{suite}-minbase.tar"
    if tarball.is_file():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp)
        tree = work / "root"
        # debootstrap knows each Ubuntu release by one shared script; a newer release than this
        # debootstrap knows works the same way.
        script = "/usr/share/debootstrap/scripts/gutsy"
        subprocess.run(["debootstrap", "--variant=minbase", f"--keyring={_pinned_keyring(work)}",
                        "--components=main,universe", suite, str(tree), MIRROR, script],
                       check=True, stdout=subprocess.DEVNULL)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(tree), "--numeric-owner", "-cf", str(partial), "."], check=True)
        os.replace(partial, tarball)
    return tarball


def ubuntu_root(suite: str, dest: Path) -> Path:
    """A fresh root of Ubuntu `suite` (jammy, noble) in `dest`, as a container image starts."""
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(dest), "--numeric-owner", "-xpf", str(_base_tarball(suite))], check=True)
    sources = dest / "etc/apt/sources.list"
    sources.write_text(f"deb {MIRROR} {suite} main universe\ndeb {MIRROR} {suite}-updates main universe\n"
                       f"deb {MIRROR} {suite}-security main universe\n")
    policy = dest / "usr/sbin/policy-rc.d"  # as in Docker's Ubuntu images: packages never start services
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", dest / "etc/resolv.conf")
    # This machine's own certificate authorities (a proxy that inspects TLS has one): the root's
    # ca-certificates package adds them to its bundle when setup.sh installs it.
    local = Path("/usr/local/share/ca-certificates")
    for crt in local.glob("*.crt") if local.is_dir() else []:
        (dest / "usr/local/share/ca-certificates").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(crt, dest / "usr/local/share/ca-certificates" / crt.name)
    return dest


def run(root: Path, command: str, *, container: bool = False, timeout: float = 3600,
        binds: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`bash -c command` as root inside `root`; `container` adds Docker's refusal of namespaces.

    `binds` maps host folders onto folders inside the root (a package cache, say).
    """
    argv = ["unshare", "--mount", "--propagation", "private", "--", SYSTEM_PYTHON, __file__, "enter", str(root),
            "1" if container else "0", *[f"{host}={inside}" for host, inside in (binds or {}).items()], "--",
            "/bin/bash", "-c", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def processes_in(root: Path) -> list[int]:
    """Processes whose root folder is `root` (none may be left once a test is done with it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == str(root):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


# ---------------------------------------------------------------- run as a script, by the system Python

NAMESPACE_FLAGS = (0x00020000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x02000000)
# CLONE_NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWCGROUP


def _namespace_filter():  # -> seccomp.SyscallFilter (the system Python's binding, python3-seccomp)
    """What Docker's default seccomp profile does to a container without CAP_SYS_ADMIN.

    Made before entering the root (the binding lives outside it) and loaded after.
    """
    import errno

    import seccomp

    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for call in ("unshare", "setns", "mount", "umount2", "pivot_root"):
        rules.add_rule(seccomp.ERRNO(errno.EPERM), call)
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags cannot be inspected: callers fall back to clone
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    return rules


def _enter(root: str, container: bool, binds: list[str], argv: list[str]) -> None:
    def mount(*args: str) -> None:
        subprocess.run(["mount", *args], check=True)

    mount("-t", "proc", "proc", f"{root}/proc")
    mount("--rbind", "/dev", f"{root}/dev")
    mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", f"{root}/dev/shm")
    for pair in binds:
        host, inside = pair.split("=", 1)
        os.makedirs(f"{root}{inside}", exist_ok=True)
        mount("--bind", host, f"{root}{inside}")
    rules = _namespace_filter() if container else None
    os.chroot(root)
    os.chdir("/")
    if rules is not None:
        rules.load()
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "TERM": "dumb", **{name: os.environ[name] for name in TLS_ENV if name in os.environ}}
    os.execve(argv[0], argv, env)


if __name__ == "__main__" and sys.argv[1:2] == ["enter"]:
    split = sys.argv.index("--")
    _enter(sys.argv[2], sys.argv[3] == "1", sys.argv[4:split], sys.argv[split + 1:])
