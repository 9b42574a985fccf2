"""Issue 9's contract on the bad-input corpus (the package ``bad_inputs``): each case, run as one
``rcert`` process on its command line, must

* exit with its documented code (2 for bad input; 70, an internal error, is always a bug);
* print exactly one stderr line, ``rcert: error: <what is wrong>``, matching the case's
  ``match``; nothing on stdout; no traceback anywhere;
* leave its folder as it was: the outputs an earlier run left there byte-identical, no new
  (stray) files, nothing removed;
* never run a payload (no ``PWNED`` marker);
* end within :data:`TIMEOUT` seconds (its process group is killed then) and within
  :data:`MAX_RSS_KB` of memory (the child's ``ru_maxrss``).

The cases run concurrently, once, in a module fixture; each test asserts on one cached
outcome, so ``-k npy_huge_shape`` reruns one case and a failure names it. Set
``RCERT_BAD_INPUTS_WORKERS`` to change the number of concurrent cases (default: the number of
CPUs), ``RCERT_BAD_INPUTS_DUMP=FILE`` to write every outcome as JSON, and
``BAD_INPUTS_RCERT_SOURCE=DIR`` to run the cases on the rcert source tree in DIR (e.g. a
worktree of an earlier release; ``benchmarks/bench_bad_inputs.py`` does).

How a case runs: as a forked child of a warm server (:data:`SERVER`, one per worker), a
Python process that has already imported torch, numpy, pandas, scipy, matplotlib, scikit-learn,
pythae and every rcert module. Starting Python and importing those took 2.5-4.4 s of each case,
almost all of the corpus's time; a fork takes milliseconds. As with a fresh ``python -m rcert``,
each case is its own process, in its own session and process group (killed as a whole on a
timeout), with its own working directory, environment (``Case.env`` included: rcert reads its
variables when it runs), rlimits (address space, file size, no core dump), stdin from
/dev/null, stdout and stderr (unbuffered) to files, its exit status (``sys.exit``'s code; 128 +
N for signal N; exit handlers run first) and its ``ru_maxrss`` from wait4. That RSS counts
the server's memory the child maps (its heap of imported objects, the library pages it
touches) besides its own, as a fresh process that imports torch holds them too. What differs:
the imports happen once, before the case's environment is in place, and
``rcert.cli.main.main`` is called directly; a real ``python -m`` start-up of the command is
covered by ``tests/cli/test_cli.py::test_console_entry_in_a_subprocess``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import queue
import re
import select
import stat
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bad_inputs
import numpy as np
import pytest
from bad_inputs import CASES, KEPT, MARKER, MODELS, OLD, Case

#: Wall-clock limit of one case, in seconds; its process group is killed after it.
TIMEOUT = 30.0
#: Largest resident memory of one case, in KB (ru_maxrss).
MAX_RSS_KB = 1 << 20
#: Address-space limit of a case (a guard for the machine, far above MAX_RSS_KB): a run that
#: reads /dev/zero to its end fails with MemoryError instead of taking the machine down.
#: Virtual reservations are not resident memory: rcert's bounded reads ask read() for the
#: 4 GiB file ceiling at once, which CPython reserves (untouched) up front.
ADDRESS_SPACE = 6 << 30
#: Largest file a case may write.
FILE_SIZE = 2 << 30
#: How long a server may take to import everything (two start at once on a busy machine).
STARTUP_TIMEOUT = 300.0

#: The warm server: ``python -I -c SERVER`` imports what the commands import, then reads one
#: JSON request per line on stdin, ``{argv, cwd, env, stdout_path, stderr_path, limits,
#: timeout}``, runs ``rcert ARGV`` in a forked child (see the module docstring) and answers one
#: JSON line on stdout, ``{code, maxrss_kb, timed_out, wall_s}``. Its first line says it is
#: ready. It does no torch computation before forking: no OpenMP or BLAS thread may exist in
#: a process that forks. The protocol's descriptors are its own: a child closes them, and the
#: server's fds 0 and 1 point elsewhere, so nothing printed can reach the protocol.
SERVER = r"""
import atexit, ctypes, gc, importlib, io, json, os, pkgutil, resource, select, signal, sys
import time, traceback

sys.dont_write_bytecode = True  # -I ignores PYTHONDONTWRITEBYTECODE
requests = os.fdopen(os.dup(0), "rb")
answers = os.dup(1)
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 0)
os.dup2(2, 1)
os.close(null)

# Another rcert source tree to run the corpus against (benchmarks/bench_bad_inputs.py
# compares releases); by default the installed one.
if os.environ.get("BAD_INPUTS_RCERT_SOURCE"):
    sys.path.insert(0, os.environ["BAD_INPUTS_RCERT_SOURCE"])
started = time.monotonic()
failed = []
# What the commands import inside functions, so that no child pays for it. A module that does
# not import here is imported (and fails) in the child, as in a fresh process.
for name in ("numpy", "torch", "pandas", "scipy.stats", "matplotlib", "safetensors.torch",
             "click", "sklearn.datasets", "pythae.models", "rcert", "rcert.cli.main"):
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {exc!r}")
if "rcert" in sys.modules:
    for info in pkgutil.walk_packages(sys.modules["rcert"].__path__, "rcert.",
                                      onerror=lambda name: failed.append(name)):
        if info.name.rpartition(".")[2] != "__main__":
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failed.append(f"{info.name}: {exc!r}")
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(1)
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
server = os.getpid()
LIMITS = ("RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_CORE")
gc.collect()
gc.freeze()  # the imports' objects are never collected: a child's collections skip them


def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return {key: fields[key].strip() for key in ("Threads", "VmRSS", "VmSize")}


def child(req):
    try:
        os.setsid()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the server gone, the case goes too
        if os.getppid() != server:
            os._exit(137)
        os.close(requests.fileno())
        os.close(answers)
        stdin = os.open(os.devnull, os.O_RDONLY)
        out = os.open(req["stdout_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        err = os.open(req["stderr_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        for fd, target in ((stdin, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        # Unbuffered, as PYTHONUNBUFFERED=1 makes a fresh process's streams.
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(
            io.FileIO(0, "r", closefd=False), encoding=sys.stdin.encoding,
            errors=sys.stdin.errors)
        sys.stdout = sys.__stdout__ = io.TextIOWrapper(
            io.FileIO(1, "w", closefd=False), encoding=sys.stdout.encoding,
            errors=sys.stdout.errors, write_through=True)
        sys.stderr = sys.__stderr__ = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), encoding=sys.stderr.encoding,
            errors=sys.stderr.errors, write_through=True)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.path.insert(0, os.getcwd())  # what ``python -m`` puts first
        sys.argv = ["rcert", *req["argv"]]
        for name, value in zip(LIMITS, req["limits"]):
            kind = getattr(resource, name)
            soft, hard = resource.getrlimit(kind)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (value, hard))
        main = sys.modules["rcert.cli.main"].main if "rcert.cli.main" in sys.modules else (
            importlib.import_module("rcert.cli.main").main)
        code = 0
        try:
            main(req["argv"])
        except SystemExit as exc:
            code = exc.code
            if code is None:
                code = 0
            elif not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        # As a fresh interpreter ends: exit handlers run, garbage collected, streams flushed.
        atexit._run_exitfuncs()
        gc.collect()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                code = 120
    except BaseException:
        try:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(1)
    os._exit(code & 0xFF)


def wait(pid, timeout):
    # -> (wait status, rusage, timed out); the child is reaped only here, so that a kill can
    # never reach a recycled pid.
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            got, status, usage = os.wait4(pid, os.WNOHANG)
            if got:
                return status, usage, False
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if pidfd is None:
                time.sleep(min(left, 0.01))
            else:
                select.select([pidfd], [], [], left)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # not yet in its own group
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    return status, usage, True


def answer(doc):
    data = (json.dumps(doc) + "\n").encode()
    while data:
        data = data[os.write(answers, data):]


answer({"ready": True, "pid": server, "startup_s": time.monotonic() - started,
        "failed_imports": failed, **status()})
for line in requests:
    req = json.loads(line)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(req)
    status_, usage, timed_out = wait(pid, req["timeout"])
    code = os.waitstatus_to_exitcode(status_)
    answer({"code": code if code >= 0 else 128 - code, "maxrss_kb": usage.ru_maxrss,
            "timed_out": timed_out, "wall_s": time.monotonic() - start})
"""


class ServerError(Exception):
    """A warm server died, or gave no answer in time."""


class Server:
    """One warm server (:data:`SERVER`); used by one thread at a time."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / f"server-{id(self):x}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", SERVER], cwd=folder, env=_base_environment(),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True)
        self._buffer = b""
        #: The server's first line: its pid, start-up time, threads and memory (VmRSS).
        self.info: dict | None = None

    def run(self, request: dict) -> dict:
        """Run one case (a request of :data:`SERVER`) and return the server's answer."""
        if self.info is None:
            self.info = self._answer(STARTUP_TIMEOUT)
            if self.info.get("Threads") != "1":  # a thread's locks are not forked with it
                raise ServerError(f"the server has {self.info.get('Threads')} threads before "
                                  f"it forks (BLAS or OpenMP started?): {self.info}")
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            raise ServerError(f"cannot write to the server: {exc!r}{self._tail()}") from None
        return self._answer(request["timeout"] + 60)

    def _answer(self, timeout: float) -> dict:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ServerError(f"no answer from the server in {timeout:g} s{self._tail()}")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self.proc.wait()
                raise ServerError(f"the server ended (status {self.proc.returncode})"
                                  + self._tail())
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return ("; its log ends: " + " | ".join(lines[-5:])) if lines else ""

    def close(self, *, kill: bool = False) -> None:
        """End the server: its stdin closed (it ends after its case), or killed."""
        if kill and self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=TIMEOUT + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class Servers:
    """A pool of warm servers, started when a thread finds none idle (so at most one per
    worker thread); a server that fails is killed and replaced by the next start."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.idle: queue.SimpleQueue[Server] = queue.SimpleQueue()
        self.started: list[Server] = []
        self.lock = threading.Lock()

    def run(self, request: dict) -> dict:
        try:
            server = self.idle.get_nowait()
        except queue.Empty:
            with self.lock:
                server = Server(self.folder)
                self.started.append(server)
        try:
            answer = server.run(request)
        except BaseException:
            server.close(kill=True)
            raise
        self.idle.put(server)
        return answer

    def close(self) -> None:
        with self.lock:
            servers, self.started = self.started, []
        for server in servers:
            server.close()


@dataclass
class Outcome:
    """What one case did."""

    id: str
    argv: list[str]
    folder: str = ""
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    maxrss_kb: int | None = None
    timed_out: bool = False
    changes: list[str] = field(default_factory=list)
    payload_ran: bool = False
    setup_error: str | None = None
    crash_log: str | None = None


def _expand(arg: str, t: Path) -> str:
    return arg.replace("{t}", str(t)).replace("{m}", str(MODELS))


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed) by relative path: its kind and, for a
    regular file, its bytes' digest (size and mtime for files over 4 MB)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                if info.st_size > 4 << 20:
                    out[rel] = ("file", info.st_size, info.st_mtime_ns)
                else:
                    out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[rel] = (stat.S_IFMT(info.st_mode),)
    return out


#: The lock file of a report folder (rcert.files.LOCK_NAME): documented to stay, empty, in a
#: folder that existed before the run (docs/errors.md), so it is not a stray file.
LOCK = ".lock"


def _changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    empty = ("file", hashlib.sha256(b"").hexdigest())
    new = [p for p in after.keys() - before.keys()
           if not (Path(p).name == LOCK and after[p] == empty)]
    return ([f"new {p}" for p in sorted(new)]
            + [f"removed {p}" for p in sorted(before.keys() - after.keys())]
            + [f"changed {p}" for p in sorted(before.keys() & after.keys())
               if before[p] != after[p]])


def _prepare(t: Path) -> None:
    """The outputs an earlier run left, and two good inputs."""
    for name in KEPT:
        (t / name).parent.mkdir(parents=True, exist_ok=True)
        (t / name).write_bytes(OLD)
    np.save(t / "good.npy", bad_inputs.good_inputs())


def _base_environment() -> dict[str, str]:
    """The environment of every case before its own: no RCERT_* variable, one thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCERT_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    return env


def _environment(logs: Path, case: Case) -> dict[str, str]:
    env = _base_environment()
    env.update(RCERT_LOG_DIR=str(logs))
    env.update(dict(case.env))
    return env


def run_case(case: Case, base: Path, servers: Servers) -> Outcome:
    """Set up ``case`` in ``base/<id>/work`` and run it (see the module docstring)."""
    home = base / case.id
    t, logs = home / "work", home / "logs"
    t.mkdir(parents=True)
    logs.mkdir()
    argv = [_expand(a, t) for a in case.argv]
    outcome = Outcome(case.id, argv, str(t))
    try:
        _prepare(t)
        if case.setup is not None:
            case.setup(t)
    except Exception as exc:  # a broken case, not a broken rcert: reported as such
        outcome.setup_error = f"{type(exc).__name__}: {exc}"
        return outcome
    before = _snapshot(t)
    stdout, stderr = home / "stdout", home / "stderr"
    stdout.write_bytes(b"")
    stderr.write_bytes(b"")
    answer = servers.run({"argv": argv, "cwd": str(t), "env": _environment(logs, case),
                          "stdout_path": str(stdout), "stderr_path": str(stderr),
                          "limits": [ADDRESS_SPACE, FILE_SIZE, 0], "timeout": TIMEOUT})
    outcome.code = answer["code"]
    outcome.timed_out = answer["timed_out"]
    outcome.wall_s = answer["wall_s"]
    outcome.maxrss_kb = answer["maxrss_kb"]
    outcome.stdout = stdout.read_bytes().decode("utf-8", "replace")
    outcome.stderr = stderr.read_bytes().decode("utf-8", "replace")
    outcome.payload_ran = (t / MARKER).exists()
    outcome.changes = _changes(before, _snapshot(t))
    crash = sorted(logs.glob("rcert-crash-*.log"))
    if crash:
        lines = crash[0].read_text(errors="replace").splitlines()
        outcome.crash_log = "\n".join(lines[-6:])
    return outcome


def masked(line: str, o: Outcome) -> str:
    """``line`` with every path into the case folder or the models folder as ``PATH``, so
    that ``match`` judges the message's words, never the names of the case's files."""
    for root in (o.folder, str(MODELS)):
        if root:
            line = re.sub(re.escape(root) + r"[^\s:;,'\")]*", "PATH", line)
    return line


def problems(case: Case, o: Outcome) -> list[str]:
    """Every way in which outcome ``o`` breaks the contract for ``case``."""
    if o.setup_error:
        return [f"the case's setup failed: {o.setup_error}"]
    found = []
    if o.timed_out:
        found.append(f"no answer within {TIMEOUT:g} s: killed (a hang?)")
    if o.maxrss_kb is not None and o.maxrss_kb > MAX_RSS_KB:
        found.append(f"max RSS {o.maxrss_kb / 1024:.0f} MB, over {MAX_RSS_KB / 1024:.0f} MB")
    if o.payload_ran:
        found.append(f"a payload ran: {MARKER} exists")
    if o.code != case.expect_code:
        found.append(f"exit code {o.code}, expected {case.expect_code}")
    if "Traceback" in o.stderr or "Traceback" in o.stdout:
        found.append("a traceback was printed")
    lines = o.stderr.splitlines()
    errors = [line for line in lines if line.startswith("rcert: error: ")]
    if len(lines) != 1 or len(errors) != 1 or not errors[0][len("rcert: error: "):].strip():
        found.append(f"stderr is not exactly one 'rcert: error: ...' line: {o.stderr[:400]!r}")
    if errors and case.match and not re.search(case.match, masked(errors[0], o), re.I):
        found.append(f"the message does not say what is wrong (expected /{case.match}/): "
                     f"{masked(errors[0], o)[:300]!r}")
    if o.stdout:
        found.append(f"stdout is not empty: {o.stdout[:200]!r}")
    if o.changes:
        found.append("the case folder changed: " + ", ".join(o.changes[:8])
                     + (" ..." if len(o.changes) > 8 else ""))
    if o.crash_log:
        found.append("crash log ends:\n" + o.crash_log)
    return found


def _selected(session: pytest.Session) -> set[str]:
    here = Path(__file__).resolve()
    return {item.callspec.params["case"].id for item in session.items
            if getattr(item, "path", None) == here and hasattr(item, "callspec")
            and "case" in item.callspec.params}


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """Every selected case's outcome, run concurrently once."""
    base = tmp_path_factory.mktemp("bad_inputs")
    bad_inputs.TEMPLATES[:] = [tmp_path_factory.mktemp("bad_input_templates")]
    chosen = _selected(request.session)
    cases = [c for c in CASES if c.id in chosen]
    workers = int(os.environ.get("RCERT_BAD_INPUTS_WORKERS") or os.cpu_count() or 2)
    start = time.monotonic()
    servers = Servers(base)

    def run(c: Case) -> Outcome:
        try:
            return run_case(c, base, servers)
        except Exception as exc:  # the runner's own failure, reported on the case
            return Outcome(c.id, list(c.argv), setup_error=f"runner: {exc!r}")

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            done = dict(zip([c.id for c in cases], pool.map(run, cases), strict=True))
    finally:
        started = [s.info for s in servers.started]
        servers.close()
    dump = os.environ.get("RCERT_BAD_INPUTS_DUMP")
    if dump:
        by_id = {c.id: c for c in cases}
        Path(dump).write_text(json.dumps(
            {"wall_s": time.monotonic() - start, "workers": workers, "servers": started,
             "cases": [{**asdict(o), "category": by_id[o.id].category,
                        "expect_code": by_id[o.id].expect_code,
                        "problems": problems(by_id[o.id], o)} for o in done.values()]},
            indent=1))
    return done


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, outcomes: dict[str, Outcome]) -> None:
    found = problems(case, outcomes[case.id])
    assert not found, f"rcert {' '.join(outcomes[case.id].argv)[:300]}\n" + "\n".join(found)


def test_the_corpus_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 170
    commands = {c.argv[0] for c in CASES if c.argv}
    assert commands >= {"margin", "attack", "curve", "report", "check", "inspect", "plot",
                        "train", "convert"}


def test_docs_state_the_corpus_size_and_it_reaches_the_latent_commands() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    assert f"runs the {len(CASES)} cases of a generated corpus" in doc
    assert {c.argv[0] for c in CASES if c.argv} >= {"latent-attack", "latent-margin", "measure"}


def test_the_payloads_run_when_unpickled(tmp_path) -> None:
    """The control: a hostile pickle of the corpus does create its marker when a reader does
    unpickle it, so "no marker" in a case means the payload was refused."""
    import io
    import pickle

    import torch

    pickle.loads(bad_inputs.hostile_pickle(tmp_path))
    assert (tmp_path / MARKER).exists()
    (tmp_path / MARKER).unlink()
    saved = bad_inputs.torch_bytes({"w": bad_inputs.Payload(tmp_path)})
    torch.load(io.BytesIO(saved), weights_only=False)
    assert (tmp_path / MARKER).exists()
