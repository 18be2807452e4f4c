"""Stage 2a, the pre-loaded process: imports torch and the checking package once, then forks one grading
process (:mod:`kdcore.classroom.worker`) per request.

    python -m kdcore.classroom.zygote        # started by the grader, normally inside bubblewrap

Importing torch takes about 3 s of CPU; forking a process that has already done it takes milliseconds, so
a batch pays for the import once per sandbox instead of once per submission. The zygote never runs learner
code itself and never reads a submission. It talks to the grader in JSON lines on its stdin/stdout
(:mod:`kdcore.classroom.protocol`); each grading process it forks first closes those pipes.

Inside the sandbox the zygote is PID 1 of the sandbox's PID namespace (``bwrap --as-pid-1``): the kernel
drops every signal its children send it (it installs no handler), it is not dumpable (they cannot ptrace
it or read its memory), and after each grading process it kills every process left in the namespace
(``kill(-1, SIGKILL)`` from PID 1 spares only itself), reaps them, and empties the sandbox's private /tmp,
so nothing one submission starts or leaves can reach the next one in the same sandbox. Without a sandbox
(``--no-sandbox``) it kills only the grading process's group; processes that left it survive.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import traceback

from . import protocol


def _not_dumpable() -> None:
    """prctl(PR_SET_DUMPABLE, 0): no ptrace, no /proc/<pid>/mem for processes without CAP_SYS_PTRACE."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        pass


def _dumpable() -> None:
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(4, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class _Channel:
    """JSON lines over two file descriptors."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd, self.buffer = read_fd, write_fd, b""

    def send(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.write_fd, data):]

    def receive(self) -> dict | None:
        while b"\n" not in self.buffer:
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def _child(message: dict, channel: _Channel) -> None:
    """In the forked grading process: detach, drop the control pipes, run the worker, never return."""
    code = 70
    try:
        os.setsid()
        _dumpable()
        cwd = message["cwd"]
        os.chdir(cwd)
        os.environ.update({str(k): str(v) for k, v in message.get("env", {}).items()})
        devnull = os.open(os.devnull, os.O_RDWR)
        stderr = os.open(os.path.join(cwd, protocol.STDERR_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(stderr, 2)
        os.closerange(3, 65536)  # the control pipes included: learner code cannot talk to the grader
        from . import worker
        code = worker.main([str(a) for a in message[protocol.MSG_RUN]]) or 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


def _clear_sandbox_leftovers(child: int) -> None:
    """Kill and reap every process a grading process left; empty the private /tmp (sandbox only)."""
    if os.getpid() != 1:  # no PID namespace of our own: only the grading process's group may be touched
        try:
            os.killpg(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)  # from PID 1: every other process of the namespace
        except ProcessLookupError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:  # PID 1 is every orphan's parent: no child left means no process left
            break
        time.sleep(0.005)
    for folder in ("/tmp", "/dev/shm"):
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for name in entries:
            path = os.path.join(folder, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                pass


def main() -> int:
    # The control pipes move to private descriptors; 0 and 1 become /dev/null so that nothing imported
    # below can write into the protocol by printing.
    channel = _Channel(os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _not_dumpable()
    # `python -m` puts the working folder (the writable scratch folder) first on sys.path: drop it, so that
    # a file a submission writes there can never shadow a module imported later.
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as PID 1 with no handler, the kernel drops it
    import torch  # noqa: F401  (the point of this process)

    from . import catalogue, reference_use, worker  # noqa: F401
    try:  # most notebooks import pyplot: once here, not per submission (inside a sandbox, whose /tmp is emptied
        import matplotlib  # after each submission, it would also rebuild its font cache every time)
        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        pass
    channel.send({protocol.MSG_READY: os.getpid()})
    while True:
        message = channel.receive()
        if message is None or message.get(protocol.MSG_QUIT):
            return 0
        if protocol.MSG_RUN not in message:
            continue
        pid = os.fork()
        if pid == 0:
            _child(message, channel)
        channel.send({protocol.MSG_STARTED: pid})
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        _clear_sandbox_leftovers(pid)
        channel.send({protocol.MSG_EXIT: code})


if __name__ == "__main__":
    sys.exit(main())
