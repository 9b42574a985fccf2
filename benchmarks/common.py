"""What the benchmark scripts share: the models, interleaved timing, and the run record."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import torch

import rcert

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: Source for child processes that measure their own memory: ``status_kb("VmHWM")`` is the
#: peak resident set in kB, ``status_kb("VmRSS")`` the current one (Linux /proc).
STATUS_KB = '''
def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1
'''


def build(input_shape: tuple[int, ...], latent_dim: int, hidden: tuple[int, ...]):
    """A randomly initialised MLP VAE in eval mode (training does not change the cost)."""
    torch.manual_seed(0)
    model = rcert.build_model("mlp", input_shape=input_shape, latent_dim=latent_dim,
                              hidden=hidden)
    return model.eval()


def shipped(path: str) -> tuple[torch.nn.Module, float]:
    """A shipped checkpoint (``path`` relative to the repository, e.g.
    ``"models/vae-digits.safetensors"``) and its ``recommended_r``."""
    model = rcert.load(ROOT / path)
    return model, float(model.meta["recommended_r"])


def timed(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the seconds it took (one run, wall clock)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def log(message: str) -> None:
    """Progress for the terminal, shown at once."""
    print(message, flush=True)


def time_interleaved(fns: dict[str, Callable[[], object]], *, warmup: int,
                     repeats: int) -> dict[str, dict[str, Any]]:
    """Seconds per call of each function: median and min over ``repeats`` interleaved runs.

    Round-robin over the functions, so a busy neighbour on the machine slows all alike.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: {"median_s": statistics.median(s), "min_s": min(s), "samples_s": s}
            for name, s in samples.items()}


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --quick, --threads, --repeats, --out."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    p.add_argument("--threads", default=None,
                   help="comma-separated torch thread counts to time at "
                        "(default: torch's default, left unchanged)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per method")
    p.add_argument("--out", type=Path, default=RESULTS / f"{name}.json")
    return p


def thread_counts(arg: str | None) -> list[int]:
    return [int(t) for t in arg.split(",")] if arg else [torch.get_num_threads()]


def single_thread(arg: str | None) -> int:
    """Set torch to the first of ``--threads``, or to one thread without it (on a shared
    machine, 2 OpenMP threads wait for each other); returns the count."""
    threads = thread_counts(arg)[0] if arg else 1
    torch.set_num_threads(threads)
    return threads


def finish(name: str, out: Path, load_before: tuple[float, ...], **fields: Any) -> None:
    """Warn if the machine was busy, and write the run record as JSON."""
    load_after = os.getloadavg()
    print(f"\nload average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    if max(load_before[0], load_after[0]) > 0.5:
        print("WARNING: other processes were using the CPUs; multi-threaded timings suffer "
              "most (an OpenMP thread that waits for a descheduled partner), so rerun on an "
              "idle machine before trusting a MISS")
    payload = {"benchmark": name, "date": date.today().isoformat(),
               "torch": torch.__version__, "python": platform.python_version(),
               "cpu_count": os.cpu_count(), "loadavg_before": load_before,
               "loadavg_after": load_after, **fields}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
