"""The cost of mixing inside a training step: ``python -m mixbook.bench.stepcost``.

One SGD step (forward, loss, backward, update) of a CIFAR ResNet-18
(:class:`mixbook.training.models.CifarResNet18`, channels_last, ``b = 128`` images of 3×32², 100
classes) with each registered training method (:func:`mixbook.training.steps.make_method`), timed
against the ERM step of the same network in the same run (:func:`mixbook.bench.timing.time_ops`:
interleaved, median of repeats; CUDA events on a GPU), in fp32 and under bf16 autocast on CUDA.

The mixing arithmetic of a pairwise method is ~0.1% of such a step on an H200 (chapter 7), so
what a pairwise method adds to it is its per-call overhead: the target is **every pairwise
method's step ≤ 1.03× ERM's** (mixup, the reformulation, manifold mixup, CutMix). The dense
methods (ζ-mixup, MultiMix with ``n`` outputs, Dense MultiMix) are reported without a target:
their extra work (an ``(n, b)`` matmul, ``n`` more rows through the head) is real arithmetic.

On a CPU the same command runs (the ratios mean little there: the convolutions dominate and the
step takes a second); ``--quick`` (``b = 8``, 10 classes, few repeats) is the smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..chapters.results import provenance
from ..core.runtime import generator as seeded_generator
from ..training.models import CifarResNet18
from ..training.steps import make_method
from .cases import _resolve_device
from .timing import time_ops

__all__ = ["METHODS", "PAIRWISE", "STEP_TARGET", "run", "evaluate", "main"]

METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "ERM": ("erm", {}),
    "mixup": ("mixup", {"alpha": 1.0}),
    "reformulation": ("reformulation", {"alpha": 1.0}),
    "manifold_mixup": ("manifold_mixup", {"layers": ["features.1", "features.2", "features.3"]}),
    "cutmix": ("cutmix", {}),
    "zeta": ("zeta", {}),
    "multimix n=128": ("multimix", {"n": 128}),
    "multimix n=1000": ("multimix", {"n": 1000}),
    "dense_multimix n=1000": ("dense_multimix", {"layer": "features.4", "n": 1000}),
}
"""Row name -> (registered method, its options)."""

PAIRWISE = ("mixup", "reformulation", "manifold_mixup", "cutmix")
"""The rows judged against :data:`STEP_TARGET`."""

STEP_TARGET = 1.03
"""A pairwise method's step may cost at most this many ERM steps."""


def _step(net: torch.nn.Module, opt: torch.optim.Optimizer, method: object, x: torch.Tensor, y: torch.Tensor,
          num_classes: int, gen: torch.Generator, bf16: bool) -> Callable[[], None]:
    def run() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = method.loss(net, x, y, num_classes, gen)
        loss.backward()
        opt.step()
    return run


def run(*, device: torch.device | str = "auto", quick: bool = False, precisions: Sequence[str] | None = None,
        methods: Sequence[str] | None = None, repeats: int | None = None, number: int | None = None,
        seed: int = 0) -> dict[str, Any]:
    """Time one step of every method (``methods``: names of :data:`METHODS`, default all) on
    ``device``; returns ``{"provenance", "parameters", "rows", "targets"}``. A method that fails
    to build or run is recorded with its error and the others go on."""
    dev = _resolve_device(device)
    names = list(METHODS) if methods is None else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown or "ERM" not in names:
        raise ValueError(f"methods must be names of {list(METHODS)} including 'ERM', got {names}")
    if precisions is None:
        precisions = ["fp32", "bf16"] if dev.type == "cuda" and not quick else ["fp32"]
    for p in precisions:
        if p not in ("fp32", "bf16"):
            raise ValueError(f"precisions must hold 'fp32' or 'bf16', got {p!r}")
    b, num_classes = (8, 10) if quick else (128, 100)
    repeats = repeats or (2 if quick else 7)
    number = number or (1 if quick else 5)
    torch.manual_seed(seed)
    x = torch.randn(b, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (b,), device=dev)
    gen = seeded_generator(seed, dev)
    rows: list[dict[str, Any]] = []
    for precision in precisions:
        net = CifarResNet18(num_classes=num_classes).to(dev).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        ops: dict[str, Callable[[], None]] = {}
        for name in names:
            registered, options = METHODS[name]
            try:
                fn = _step(net, opt, make_method(registered, **options), x, y, num_classes, gen, precision == "bf16")
                fn()   # warm-up: builds hooks, caches, cuDNN plans
            except Exception as err:  # noqa: BLE001 - one broken method must not cost the run
                rows.append({"precision": precision, "method": name, "error": f"{type(err).__name__}: {err}"[:300]})
                continue
            ops[name] = fn
        if "ERM" not in ops:
            continue
        frame = time_ops(ops, repeats=repeats, number=number, warmup=1, baseline="ERM", device=dev)
        for name, r in frame.iterrows():
            rows.append({"precision": precision, "method": name, "ms": 1e3 * float(r["median_s"]),
                         "ratio_to_ERM": float(r["ratio_to_ERM"])})
    params = {"batch": b, "num_classes": num_classes, "precisions": list(precisions), "repeats": repeats,
              "number": number, "seed": seed, "quick": quick, "methods": {n: METHODS[n] for n in names}}
    return {"provenance": provenance(dev), "parameters": params, "rows": rows, "targets": evaluate(rows)}


def evaluate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per pairwise row: ``ratio_to_ERM <= STEP_TARGET`` (``pass`` ``None`` for a row
    that failed to run)."""
    out = []
    for r in rows:
        if r["method"] in PAIRWISE:
            ratio = r.get("ratio_to_ERM")
            out.append({"name": f"{r['method']} step <= {STEP_TARGET:g}x ERM ({r['precision']})",
                        "measured": ratio, "target": f"<= {STEP_TARGET:g}",
                        "pass": None if ratio is None else bool(ratio <= STEP_TARGET), "note": r.get("error", "")})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mixbook.bench.stepcost", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:i]")
    p.add_argument("--quick", action="store_true", help="b = 8, 10 classes, 2 repeats (smoke test)")
    p.add_argument("--methods", nargs="+", default=None, help=f"rows of {list(METHODS)} (ERM always needed)")
    p.add_argument("--json", default=None, help="write the result here")
    args = p.parse_args(argv)
    result = run(device=args.device, quick=args.quick, methods=args.methods)
    for r in result["rows"]:
        shown = r.get("error") or f"{r['ms']:8.2f} ms  {r['ratio_to_ERM']:.3f}x ERM"
        print(f"{r['precision']:<5} {r['method']:<24} {shown}")
    for t in result["targets"]:
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[t["pass"]]
        m = t["measured"]
        print(f"  {verdict:<4} {t['name']:<40} {'-' if m is None else f'{m:.3f}'} (target {t['target']}) {t['note']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
