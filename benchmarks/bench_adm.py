"""Loading an ImageNet-size ADM checkpoint, and one forward pass at 256², against the reference.

The network is the ``imagenet256-uncond`` preset (the DDRM paper's ImageNet 256 model, about
552 M parameters) with random weights: DeepInverse's ``DiffUNet(large_model=True)`` (the same
configuration, used here as the independent reference) is built with its own random
initialisation, every parameter is perturbed away from it, and the state dict is saved as a
``.pt`` pickle and as ``.safetensors`` to a temporary folder.

* **Loading** runs in a fresh process per case, so that its peak resident memory is the
  load's own: the increase of the peak RSS (``VmHWM``) over the RSS after the imports,
  against the size of the weights file, and the wall time of the load. opkit's
  ``load_prior(path, config="imagenet256-uncond")`` builds the network on the ``meta`` device
  and takes the tensors of a memory-mapped state dict as its parameters
  (``load_state_dict(assign=True)``); the reference builds and initialises its network, then
  ``torch.load``\\ s the file and copies it in. A second peak is taken after one 64² forward pass,
  which touches every weight (memory-mapped pages become resident then).
* **Forward** time: one call at ``--size`` (256) with batch 1, opkit's ADM network and the
  reference on the same weights, alternated, ``--repeats`` times each; CPU time of the process
  and wall time (medians), and the largest difference of their outputs.

Usage::

    nice -n 10 python benchmarks/bench_adm.py               # 256², 2 repeats, 1 thread
    python benchmarks/bench_adm.py --threads 2 --repeats 3

Needs DeepInverse's module file (``pip install --no-deps deepinv``; its package import needs
torchvision, so ``tests/adm_reference.py`` loads the file alone). About 9 GB of memory and 5 GB
of temporary disk. Prints markdown tables (docs/solvers/pretrained.rst holds the latest ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESET = "imagenet256-uncond"


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    """Resident memory now (anonymous and file-backed pages, memory-mapped weights included)."""
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """Peak resident memory of this process image (``VmHWM``; unlike ``ru_maxrss`` it does not
    inherit the parent's peak across ``fork``/``exec``)."""
    return _status_mb("VmHWM")


def _reference_module() -> Any:
    from tests.adm_reference import diffunet_module

    module = diffunet_module()
    if module is None:
        raise SystemExit("bench_adm: needs DeepInverse's diffunet.py: pip install --no-deps deepinv")
    return module


def child(kind: str, path: str) -> None:
    """Load the weights one way, print a JSON line with the time and memory."""
    torch.set_num_threads(1)
    import solvers  # noqa: F401 - the imports are part of the baseline, not of the load

    D = _reference_module()
    base = _rss_mb()
    t0 = time.perf_counter()
    if kind == "opkit":
        from solvers.priors import load_prior

        net: Any = load_prior(path, config=PRESET).net
        call = lambda x, t: net(x, t)  # noqa: E731
    else:
        net = D.DiffUNet(large_model=True, pretrained=path).eval()
        call = lambda x, t: net.forward_diffusion(x, t)  # noqa: E731
    load_s = time.perf_counter() - t0
    peak_load = _peak_mb()
    with torch.no_grad():
        call(torch.zeros(1, 3, 64, 64), torch.tensor([10]))
    print(json.dumps({"load_s": load_s, "base": base, "peak_load": peak_load, "peak_forward": _peak_mb()}))


def _measure_load(kind: str, path: Path) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", kind, "--path", str(path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    out: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", choices=("opkit", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.path)
        return
    torch.set_num_threads(args.threads)
    from safetensors.torch import save_file

    from solvers.priors import load_prior
    from tests.adm_reference import perturb

    D = _reference_module()
    torch.manual_seed(0)
    ref = perturb(D.DiffUNet(large_model=True, pretrained=None).eval(), 0, 0.01)
    state = {k: v for k, v in ref.state_dict().items() if "alphas_cumprod" not in k}
    n_params = sum(v.numel() for v in state.values())

    with tempfile.TemporaryDirectory() as tmp:
        pt, st = Path(tmp) / "adm.pt", Path(tmp) / "adm.safetensors"
        torch.save(state, pt)
        save_file({k: v.contiguous() for k, v in state.items()}, str(st))
        del state
        loads = {
            "opkit `load_prior`, .pt (memory-mapped)": ("opkit", pt),
            "opkit `load_prior`, .safetensors": ("opkit", st),
            "reference `DiffUNet(pretrained=...)`, .pt": ("reference", pt),
        }
        measured = {
            name: {**_measure_load(kind, path), "file_mb": path.stat().st_size / 2**20}
            for name, (kind, path) in loads.items()
        }

        mine = load_prior(pt, config=PRESET).net
        x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
        t = torch.tensor([500])
        times: dict[str, list[tuple[float, float]]] = {"opkit ADMUNet": [], "reference DiffUNet": []}
        outs: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for _ in range(args.repeats):
                for name, fn in (
                    ("opkit ADMUNet", lambda: mine(x, t)),
                    ("reference DiffUNet", lambda: ref.forward_diffusion(x, t)),
                ):
                    c0, w0 = time.process_time(), time.perf_counter()
                    outs[name] = fn()
                    times[name].append((time.process_time() - c0, time.perf_counter() - w0))
        diff = float((outs["opkit ADMUNet"] - outs["reference DiffUNet"]).abs().max())
        scale = float(outs["reference DiffUNet"].abs().max())

    print(
        f"ADM `{PRESET}` configuration, {n_params / 1e6:.1f} M parameters, random weights; "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    print(
        "| loading | weights file (MB) | load time (s) | peak RSS − baseline after load (MB) | "
        "ratio to the file | after one forward (MB) | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, m in measured.items():
        print(
            f"| {name} | {m['file_mb']:.0f} | {m['load_s']:.1f} | {m['peak_load'] - m['base']:.0f} | "
            f"{(m['peak_load'] - m['base']) / m['file_mb']:.2f} | {m['peak_forward'] - m['base']:.0f} | "
            f"{(m['peak_forward'] - m['base']) / m['file_mb']:.2f} |"
        )
    print()
    print(f"| forward, 1 × 3 × {args.size}², {args.threads} thread(s) | CPU s (median) | wall s (median) |")
    print("|---|---|---|")
    for name, ts in times.items():
        cpu = statistics.median(c for c, _ in ts)
        wall = statistics.median(w for _, w in ts)
        print(f"| {name} | {cpu:.1f} | {wall:.1f} |")
    print(f"\nlargest |ε_opkit − ε_reference| = {diff:.2e} for outputs up to {scale:.2f}")


if __name__ == "__main__":
    main()
