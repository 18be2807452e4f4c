"""Stage 2, the sandboxed run: where learner code runs, and what it can see.

Every grading process runs inside bubblewrap (``bwrap``, Debian/Ubuntu/Fedora package ``bubblewrap``,
the sandbox Flatpak uses; no daemon, no root), started as::

    bwrap --unshare-user --unshare-pid --unshare-net --unshare-ipc --unshare-uts --unshare-cgroup-try
          --disable-userns --cap-drop ALL --die-with-parent --new-session --as-pid-1 --clearenv ...
          --ro-bind /usr /usr ...            # the system, read-only
          --ro-bind <python> <python> ...     # the course environment (interpreter, site-packages, kdcore)
          --proc /proc --dev /dev --tmpfs /tmp
          --bind <scratch> /grading           # the only writable folder: this submission's copy
          -- python -m kdcore.classroom.zygote

so a submission sees a read-only system and course environment, one private writable scratch folder
holding only its own copy, no network, a PID namespace of its own (no grader, no other submission in
``/proc``), no capabilities, and it dies with the grader. The class folder, the grader's originals, the
journal, the gradebook and the feedback are not mounted at all; where one of them lies inside a mounted
folder (a class folder inside the virtual environment, say) it is covered by an empty tmpfs or
``/dev/null``.

Without a working ``bwrap`` (macOS, Windows, a container without user namespaces) :func:`probe` says why
and :func:`install_hint` how to get one; the grader then refuses to grade more than one submission unless
``--no-sandbox`` is given.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import site
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol

__all__ = ["SandboxProbe", "probe", "install_hint", "Isolation", "Bubblewrap", "NoSandbox", "Zygote",
           "ZygoteFailed"]

# System folders mounted read-only when they exist (symbolic links, as on merged-/usr systems, are copied
# as links).
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Files of /etc a Python process may read: the dynamic loader's cache, users and groups (getpwuid), the
# time zone, fonts (matplotlib), alternatives (links to binaries). Not /etc itself (shadow, ssh keys...).
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group",
        "/etc/nsswitch.conf", "/etc/localtime", "/etc/fonts", "/etc/alternatives", "/etc/ssl/certs")


#: Size of the sandbox's private /tmp (in memory).
TMP_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SandboxProbe:
    available: bool
    reason: str          # why not (empty when available)
    bwrap: str | None    # path of the bwrap binary
    disable_userns: bool = False
    tmpfs_size: bool = False


def install_hint() -> str:
    return ("install bubblewrap: `sudo apt-get install bubblewrap` (Debian/Ubuntu), `sudo dnf install "
            "bubblewrap` (Fedora), `sudo pacman -S bubblewrap` (Arch); in a container, allow user namespaces "
            "(Docker: `--security-opt seccomp=unconfined`, or run the grader on the host); on macOS or Windows "
            "grade inside a Linux virtual machine")


@functools.lru_cache(maxsize=1)
def probe() -> SandboxProbe:
    """Is a working bubblewrap here? Runs ``bwrap <the grader's namespace flags> -- true`` once."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return SandboxProbe(False, "bubblewrap (`bwrap`) is not installed", None)
    try:
        help_text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        return SandboxProbe(False, f"`bwrap --help` failed: {error}", bwrap)
    disable_userns = "--disable-userns" in help_text
    if "--as-pid-1" not in help_text or "--cap-drop" not in help_text:
        return SandboxProbe(False, "this bubblewrap is too old (needs --as-pid-1 and --cap-drop, 0.4 or later)",
                            bwrap)
    true = shutil.which("true") or "/bin/true"
    command = [bwrap, *_namespace_flags(disable_userns), *_system_binds(), "--proc", "/proc", "--dev", "/dev",
               "--", true]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return SandboxProbe(False, f"bwrap could not start: {error}", bwrap)
    if run.returncode != 0:
        detail = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit code {run.returncode}"
        return SandboxProbe(False, f"bwrap cannot create its namespaces here ({detail}); user namespaces "
                                   "are probably disabled", bwrap)
    return SandboxProbe(True, "", bwrap, disable_userns, "--size" in help_text)


def _namespace_flags(disable_userns: bool) -> list[str]:
    flags = ["--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--as-pid-1"]
    if disable_userns:  # bubblewrap >= 0.8: the sandbox cannot create nested user namespaces
        flags.append("--disable-userns")
    return flags


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _ETC:
        if os.path.lexists(path):
            args += ["--ro-bind-try", path, path]
    return args


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=1)
def environment_mounts() -> tuple[tuple[str, str], ...]:
    """(source on the host, path in the sandbox) of the course environment: the interpreter's prefixes,
    the user site-packages if used, and the ``kdcore`` package itself (not the folder around it, which may
    be a course repository holding submissions)."""
    import kdcore
    mounts: dict[str, str] = {}
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site and user_site in sys.path and os.path.isdir(user_site):
        prefixes.add(user_site)
    for prefix in sorted(prefixes):
        destination = os.path.abspath(prefix)
        if any(_inside(destination, d) for d in mounts.values()):
            continue
        mounts[os.path.realpath(prefix)] = destination
    package = os.path.abspath(os.path.dirname(kdcore.__file__))
    if not any(_inside(package, d) for d in mounts.values()):
        mounts[os.path.realpath(package)] = package
    # The interpreter may be reached through links outside the prefixes (a venv's bin/python3 -> pyenv).
    executable = os.path.realpath(sys.executable)
    if not any(_inside(executable, os.path.realpath(s)) for s in mounts):
        folder = os.path.dirname(os.path.dirname(executable))
        mounts[folder] = folder
    return tuple(sorted(mounts.items(), key=lambda item: item[1].count(os.sep)))


def kdcore_parent() -> str:
    import kdcore
    return os.path.dirname(os.path.abspath(os.path.dirname(kdcore.__file__)))


class Isolation:
    """How a zygote is started and where its grading processes see the scratch folder."""
    sandboxed = False
    name = "none"

    def command(self, scratch: Path) -> list[str]:
        raise NotImplementedError

    def scratch_path(self, scratch: Path) -> str:
        """The scratch folder as the grading process sees it."""
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The environment bwrap or the zygote starts with (None: the grader's)."""
        return None


@dataclass
class Bubblewrap(Isolation):
    """Each zygote inside its own bubblewrap sandbox, with ``scratch`` as the only writable folder."""
    probe: SandboxProbe
    hidden: list[Path] = field(default_factory=list)  # paths no submission may see (submissions, outputs)
    sandboxed = True
    name = "bubblewrap"

    def scratch_path(self, scratch: Path) -> str:
        return protocol.SANDBOX_SCRATCH

    def _mounts(self) -> list[str]:
        args: list[str] = []
        for source, destination in environment_mounts():
            args += ["--ro-bind", source, destination]
        return args

    def _covers(self) -> list[str]:
        """Cover each hidden path that lies inside a mounted folder (tmpfs for folders, /dev/null for files)."""
        args: list[str] = []
        mounted = [(os.path.realpath(s), d) for s, d in environment_mounts()]
        mounted += [(os.path.realpath(p), p) for p in _SYSTEM + _ETC if os.path.isdir(p) and not os.path.islink(p)]
        for path in self.hidden:
            real = os.path.realpath(path)
            for source, destination in mounted:
                if not _inside(real, source) or real == source:
                    continue
                inside = os.path.join(destination, os.path.relpath(real, source))
                if os.path.isdir(real):
                    if not any(_inside(s, real) for s, _ in mounted):  # never cover the environment itself
                        args += ["--tmpfs", inside]
                elif os.path.exists(real):
                    args += ["--ro-bind", "/dev/null", inside]
        return args

    def command(self, scratch: Path) -> list[str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "PYTHONPATH": kdcore_parent(), "PYTHONDONTWRITEBYTECODE": "1",
               "MPLCONFIGDIR": "/tmp/matplotlib", "XDG_CACHE_HOME": "/tmp/cache"}
        args = [self.probe.bwrap or "bwrap", *_namespace_flags(self.probe.disable_userns), "--clearenv"]
        for key, value in env.items():
            if value:
                args += ["--setenv", key, value]
        args += _system_binds()
        args += ["--proc", "/proc", "--dev", "/dev"]
        if self.probe.tmpfs_size:  # bubblewrap >= 0.7: a bounded /tmp (it lives in memory)
            args += ["--size", str(TMP_BYTES)]
        args += ["--tmpfs", "/tmp"]
        # after the private /tmp, not before: a course checked out under /tmp (/tmp/course/.venv) would
        # otherwise be covered by the tmpfs and the sandbox would find no interpreter
        args += self._mounts()
        args += ["--bind", str(scratch), protocol.SANDBOX_SCRATCH, "--chdir", protocol.SANDBOX_SCRATCH]
        args += self._covers()
        args += ["--remount-ro", "/"]  # the sandbox's own root folder (mount points) read-only too
        return [*args, "--", sys.executable, "-m", "kdcore.classroom.zygote"]


class NoSandbox(Isolation):
    """``--no-sandbox``: the zygote and every grading process run with the grader's own rights."""
    name = "none"

    def command(self, scratch: Path) -> list[str]:
        return [sys.executable, "-m", "kdcore.classroom.zygote"]

    def scratch_path(self, scratch: Path) -> str:
        return str(scratch)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
        env["PYTHONPATH"] = os.pathsep.join([kdcore_parent(), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        return env


class ZygoteFailed(RuntimeError):
    """The zygote could not start or stopped answering."""


class Zygote:
    """One pre-loaded process (in its own sandbox when ``isolation`` is one) with its scratch folder.

    Must be started from a thread that lives as long as the zygote: bubblewrap's ``--die-with-parent`` is
    tied to the thread that started it.
    """

    def __init__(self, isolation: Isolation, scratch: Path, start_timeout: float = 300.0) -> None:
        self.isolation, self.scratch = isolation, scratch
        self.log = scratch.parent / f"{scratch.name}-zygote.log"  # beside the scratch folder, never inside
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(isolation.command(scratch), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log, env=isolation.environment(),
                                            start_new_session=True, bufsize=0)
        self.buffer = b""
        self.child: int | None = None
        try:
            ready = self._receive(time.monotonic() + start_timeout)
        except ZygoteFailed:
            ready = None
        if ready is None or protocol.MSG_READY not in ready:
            self.kill()
            log = self.log.read_text(errors="replace")[-2000:]
            raise ZygoteFailed(f"the grading process could not start ({isolation.name}): {log.strip()}")

    def _receive(self, deadline: float) -> dict | None:
        import json
        import select
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the zygote is gone (killed: possible without a sandbox)
                raise ZygoteFailed(f"the pre-loaded process exited (exit code {self.process.wait()})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def run(self, argv: list[str], env: dict[str, str], timeout: float) -> int | None:
        """Run one grading process; its exit code (negative: killed by that signal), or None when it did not
        finish within ``timeout`` (the zygote is then killed with everything in its sandbox)."""
        import json
        message = {protocol.MSG_RUN: argv, "env": env, "cwd": self.isolation.scratch_path(self.scratch)}
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            self.process.stdin.flush()
        except (OSError, ValueError) as error:
            raise ZygoteFailed(f"the pre-loaded process is gone: {error}") from error
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)  # raises ZygoteFailed if the zygote is gone
            if reply is None:
                self.kill()
                return None
            if protocol.MSG_STARTED in reply:
                self.child = int(reply[protocol.MSG_STARTED])
            elif protocol.MSG_EXIT in reply:
                self.child = None
                return int(reply[protocol.MSG_EXIT])

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Kill the zygote, its sandbox and (without a sandbox) the grading process's group."""
        if not self.isolation.sandboxed and self.child is not None:
            try:
                os.killpg(self.child, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        import json
        try:
            self.process.stdin.write((json.dumps({protocol.MSG_QUIT: True}) + "\n").encode())
            self.process.stdin.flush()
            self.process.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):  # ValueError: already closed
            pass
        self.kill()
