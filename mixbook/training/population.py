"""Train many (method, seed) members at once: one vectorised forward pass for a population of models.

A paired comparison over ≥ 10 seeds, several methods and a hyper-parameter grid is hundreds of
small training runs. On a CPU (and on a GPU at small sizes) each run of a small network spends
its time dispatching operators, not computing; :func:`repeat` trains all the runs together:

* every member is built exactly as :func:`mixbook.training.train.repeat` builds it
  (``torch.manual_seed(seed); model_fn()``), has its own data-order and mixing streams
  (:func:`mixbook.training.train.generators`) and its own copy of its method (so a manifold-mixup
  layer sequence restarts from its seed, as in a separate run);
* the members' parameters are stacked (``torch.func.stack_module_state``) and one optimizer
  steps them all: AdamW and SGD update element by element, so the stacked step is every
  member's own step;
* at every step each member's method *prepares* its step (:class:`~mixbook.core.step.Step`:
  the mixed inputs, the layer, the mixing tensors, the loss) from its own generator; members
  whose steps have the same form (layer, mix function, shapes) run their forward pass as one
  ``torch.func.vmap`` of ``torch.func.functional_call``, and the sum of their losses is
  back-propagated once (each member's parameters get their own loss's gradient).

A member therefore follows the same computation as its separate run, draw for draw; the
results agree to floating-point rounding (a batched matmul sums in another order), which a
long run can amplify, as it amplifies any rounding difference. ``tests/test_population.py``
checks the agreement.

Methods need :meth:`~mixbook.core.step.Method.prepare` (every built-in method except dense MultiMix has it); members of a
method without it, and models with buffers (BatchNorm), are trained one by one with
:func:`mixbook.training.train.fit`, so :func:`repeat` accepts anything :func:`mixbook.training.train.repeat` does.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from ..core import _checks
from ..core.step import Method, Step, prepares, run_step
from . import metrics, train
from .steps import make_method
from .data import Split
from ..core.runtime import resolve_device

__all__ = ["repeat", "run_all", "JobsFailed", "supports"]


def supports(method: object, model: nn.Module) -> bool:
    """Whether :func:`repeat` trains ``method`` on ``model`` in the vectorised population.

    True for methods with a ``prepare`` (:class:`mixbook.core.step.Step`) on models without buffers.
    """
    return prepares(method) and next(model.buffers(), None) is None


def repeat(
    model_fn: Callable[[], nn.Module],
    data: Split,
    methods: Mapping[str, str | Method],
    seeds: Iterable[int],
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    device: str | torch.device = "auto",
    eval_every: int | None = None,
    progress: bool = True,
    optimizer: str = "adamw",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    histories: bool = False,
    return_models: bool = False,
    keep_outputs: bool = False,
):
    """Train a fresh model per (method, seed), all at once; the final metrics as :func:`mixbook.training.train.repeat` gives them.

    Args:
        model_fn: builds one member's network (called right after ``torch.manual_seed(seed)``).
        data: a :class:`mixbook.training.data.Split` (with a validation part and label noise, if any).
        methods: ``{label: registered name or method instance}``.
        seeds: integers ≥ 0; every method runs every seed.
        epochs, batch_size, lr, device, progress, optimizer, augment: as in
            :func:`mixbook.training.train.fit`.
        weight_decay: a number ≥ 0 for every member, or ``{label: number ≥ 0}`` giving each method
            its own (a label left out gets 0): the members share one optimiser, so a member's decay
            is applied as the optimiser would apply it — decoupled, ``p ← p·(1 − lr_t·wd)`` before
            the AdamW step, or added to the gradient before the SGD step — which is what
            :func:`mixbook.training.train.fit` does with that ``weight_decay``.
        eval_every: evaluate every this many epochs and after the last (``None``: the last
            epoch only).
        histories: also return every member's :class:`mixbook.training.train.History`.
        keep_outputs: record in each History's ``outputs`` the test and validation logits at the
            evaluated epoch with the best validation accuracy so far (``"best"``: post-hoc early
            stopping, ties to the lower validation NLL, then the earlier epoch) and at the last
            epoch (``"last"``) — see :meth:`mixbook.training.train.History.best`. Needs a
            validation part in ``data``.
        return_models: also return every member's trained network, ``{(label, seed): model}``.

    Returns:
        A DataFrame with one row per (method, seed), in the order of :func:`mixbook.training.train.repeat`:
        ``method``, ``seed``, the metrics of :func:`mixbook.training.train.evaluate_split` and
        ``train_loss``; then, as asked, ``{(label, seed): History}`` and ``{(label, seed): model}``
        (``(frame, histories, models)`` with both). There is no
        per-method time: the members share their steps (time methods with :func:`mixbook.training.train.fit`).

    Raises:
        RuntimeError: a ``torch.distributed`` process group is initialised: the population is
            single-process (under ``torchrun`` use :func:`mixbook.training.train.repeat`, whose runs
            train across the ranks).
    """
    import pandas as pd

    train._single_process("population.repeat", None)  # one process: refuse a torch.distributed group
    if not isinstance(data, Split):
        raise TypeError(f"data must be a mixbook.training.data.Split, got {type(data).__name__}")
    if not isinstance(methods, Mapping) or not methods:
        raise TypeError("methods must be a non-empty mapping {label: method}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    lr = _checks.positive_float("lr", lr)
    eval_every = epochs if eval_every is None else _checks.positive_int("eval_every", eval_every)
    decays = _weight_decays(weight_decay, methods)
    optimizer = _checks.choice("optimizer", optimizer, ("adamw", "sgd"))
    keep_outputs = _checks.boolean("keep_outputs", keep_outputs)
    if keep_outputs and data.x_val is None:
        raise ValueError("keep_outputs needs a validation part in data (mixbook.training.data.validation_split): "
                         "the best epoch is chosen on it")
    dev = resolve_device(device)
    data = data.to(dev)
    objects = {label: make_method(m) if isinstance(m, str) else m for label, m in methods.items()}

    members, solo = [], []                       # (label, seed, model, method copy)
    for seed in seeds:
        train.generators(seed)                   # validates the seed like fit does
        for label, method in objects.items():
            torch.manual_seed(seed)
            model = model_fn()
            entry = (label, seed, model, copy.deepcopy(method))
            (members if supports(method, model) else solo).append(entry)

    hist: dict[tuple[str, int], train.History] = {}
    if members:
        hist.update(_train_population(members, data, dev, epochs, batch_size, lr, decays, eval_every,
                                      progress, optimizer, augment, keep_outputs))
    for label, seed, model, method in solo:
        hist[label, seed] = train.fit(model, data, method, epochs=epochs, batch_size=batch_size, lr=lr,
                                      weight_decay=decays[label], seed=seed, device=dev, eval_every=eval_every,
                                      progress=progress, optimizer=optimizer, augment=augment,
                                      keep_outputs=keep_outputs)
    rows = []
    for seed in seeds:
        for label in objects:
            final = {k: v for k, v in hist[label, seed].final.items() if k not in ("epoch", "seconds")}
            rows.append({"method": label, "seed": seed, **final})
    frame = pd.DataFrame(rows)
    out = (frame,) + ((hist,) if histories else ()) + \
        (({(label, seed): model for label, seed, model, _ in members + solo},) if return_models else ())
    return out if len(out) > 1 else frame


def _weight_decays(weight_decay: object, methods: Mapping[str, object]) -> dict[str, float]:
    """``{label: weight decay}`` from one number or a mapping (labels left out: 0), each checked ≥ 0 and finite."""
    def one(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < float("inf")):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        return float(value)

    if isinstance(weight_decay, Mapping):
        unknown = set(weight_decay) - set(methods)
        if unknown:
            raise ValueError(f"weight_decay names labels that are not in methods: {sorted(map(str, unknown))}")
        return {label: one(f"weight_decay[{label!r}]", weight_decay.get(label, 0.0)) for label in methods}
    value = one("weight_decay", weight_decay)
    return {label: value for label in methods}


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


def _train_population(members, data: Split, dev: torch.device, epochs: int, batch_size: int, lr: float,
                      decays: Mapping[str, float], eval_every: int, progress: bool, optimizer: str, augment,
                      keep_outputs: bool = False):
    """Train ``members`` (``(label, seed, model, method)``) together; ``{(label, seed): History}``.

    Not :func:`mixbook.training.train.fit`'s loop: a step here is one vmapped forward pass over
    the members' stacked parameters (each member's own batch ``(k, b, *)`` and draws), not one
    model's step, so only fit's pieces are shared: :func:`~mixbook.training.train.generators`,
    :func:`~mixbook.training.train.optimizer_and_schedule` and
    :class:`~mixbook.training.train.History`, with fit's record per member and epoch.
    """
    k = len(members)
    models = [m for _, _, m, _ in members]
    for model in models:
        model.to(dev)
    params, _ = stack_module_state(models)      # {name: (k, *shape)} leaves
    base = copy.deepcopy(models[0]).to("meta")  # the structure; the parameters come from `params`
    base.train()
    names = list(params)
    gens = [train.generators(seed, dev) for _, seed, _, _ in members]
    n = data.x_train.shape[0]
    wd = torch.tensor([decays[label] for label, _, _, _ in members], device=dev, dtype=torch.float32)
    uniform = bool((wd == wd[0]).all())
    # one weight decay for all: the optimiser's own; per member: applied as the optimiser would (see repeat)
    opt, sched = train.optimizer_and_schedule(params.values(), optimizer, lr, float(wd[0]) if uniform else 0.0,
                                              epochs * -(-n // batch_size))
    decay_shape = {name: (k,) + (1,) * (p.dim() - 1) for name, p in params.items()}
    # dropout masks: one independent draw per member from torch's global generator (seeded by the last
    # member built), so a member with dropout does not repeat its separate fit run draw for draw
    randomness = "different" if _has_dropout(base) else "error"
    histories = {(label, seed): train.History(method=repr(method), seed=seed) for label, seed, _, method in members}

    def call(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, p, (x,))

    cache: dict[tuple, Callable] = {}

    def group_step(first: Step) -> Callable:
        """``(params, inputs, args, loss_args) -> (g,)`` losses, vmapped, for steps of ``first``'s form."""
        key = (first.layer, first.mix, first.loss)
        if key not in cache:
            layer, mix, loss = key
            module = None if mix is None else base.get_submodule(layer)

            def one(p, x, args, loss_args):
                logits = run_step(lambda inp: call(p, inp), Step(x, loss, (), layer, mix, args),
                                        module=module)
                return loss(logits, *loss_args)

            cache[key] = vmap(one, randomness=randomness)
        return cache[key]

    bar = tqdm(range(1, epochs + 1), desc=f"population of {k}", disable=not progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        totals = torch.zeros(k, device=dev)
        orders = torch.stack([torch.randperm(n, device=dev, generator=g[0]) for g in gens])
        for i in range(0, n, batch_size):
            idx = orders[:, i:i + batch_size]                    # (k, b)
            xs, ys = data.x_train[idx], data.y_train[idx]
            steps = []
            for j, (_, _, _, method) in enumerate(members):
                xb = xs[j] if augment is None else augment(xs[j], gens[j][0])
                steps.append(method.prepare(base, xb, ys[j], data.num_classes, gens[j][1]))
            groups: dict[tuple, list[int]] = {}
            for j, st in enumerate(steps):
                sig = (st.layer, st.mix, st.loss, tuple(st.inputs.shape),
                       tuple(tuple(a.shape) for a in st.args), tuple(tuple(a.shape) for a in st.loss_args))
                groups.setdefault(sig, []).append(j)
            stacked = torch.empty(k, device=dev)
            parts = []
            for js in groups.values():
                everyone = len(js) == k
                index = None if everyone else torch.tensor(js, device=dev)
                p = params if everyone else {name: params[name].index_select(0, index) for name in names}
                first = steps[js[0]]
                stack = lambda get, count: tuple(torch.stack([get(steps[j])[a] for j in js]) for a in range(count))  # noqa: E731
                losses = group_step(first)(p, torch.stack([steps[j].inputs for j in js]),
                                           stack(lambda st: st.args, len(first.args)),
                                           stack(lambda st: st.loss_args, len(first.loss_args)))
                parts.append((index, losses))
            if len(parts) == 1:
                stacked = parts[0][1]
            else:
                stacked = torch.zeros(k, device=dev).index_put((torch.cat([i for i, _ in parts]),),
                                                              torch.cat([l for _, l in parts]))
            opt.zero_grad(set_to_none=True)
            stacked.sum().backward()
            if not uniform:
                _member_decay(params, decay_shape, wd, optimizer, opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            totals += stacked.detach() * idx.shape[1]
        seconds = time.perf_counter() - start
        train_loss = (totals / n).tolist()
        evaluated = epoch % eval_every == 0 or epoch == epochs
        logits: dict[str, torch.Tensor] = {}
        evals = _evaluate(base, params, data, logits if keep_outputs else None) if evaluated else [{}] * k
        for j, (label, seed, _, _) in enumerate(members):
            record = {"epoch": epoch, "train_loss": train_loss[j], "seconds": seconds / k, **evals[j]}
            histories[label, seed].epochs.append(record)
            if keep_outputs and evaluated:
                histories[label, seed].keep(record, {part: out[j] for part, out in logits.items()}, last=epoch == epochs)
        bar.set_postfix(loss=f"{sum(train_loss) / k:.3f}")
    # hand the trained weights back to the members' own modules
    with torch.no_grad():
        for j, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(params[name][j])
    return histories


@torch.no_grad()
def _member_decay(params: dict[str, torch.Tensor], shape: dict[str, tuple[int, ...]], wd: torch.Tensor,
                  optimizer: str, lr: float) -> None:
    """Each member's own weight decay ``wd`` ``(k,)``, as the optimiser applies it: AdamW decays the
    parameters before its step (``p ← p·(1 − lr·wd)``), SGD adds ``wd·p`` to the gradient."""
    for name, p in params.items():
        w = wd.view(shape[name])
        if optimizer == "sgd":
            if p.grad is not None:
                p.grad.add_(p * w)
        else:
            p.mul_(1 - lr * w)


def _no_loss(logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover - the vmapped pass never scores
    raise AssertionError("the population scores each member outside vmap")


@torch.no_grad()
def _logits(base: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``(k, n, C)``: every member's logits on ``x`` ``(n, *)``, in eval mode."""
    was = base.training
    base.eval()
    try:
        run = vmap(lambda p, xb: functional_call(base, p, (xb,)), in_dims=(0, None))
        return torch.cat([run(params, x[i:i + chunk]) for i in range(0, x.shape[0], chunk)], dim=1)
    finally:
        base.train(was)


def _evaluate(base: nn.Module, params: dict[str, torch.Tensor], data: Split,
              logits: dict[str, torch.Tensor] | None = None) -> list[dict[str, float]]:
    """:func:`mixbook.training.train.evaluate_split` for every member (one vectorised pass a part);
    with ``logits`` (a dict), also the members' ``"test"`` and ``"val"`` logits ``(k, n, C)`` into it."""
    k = next(iter(params.values())).shape[0]
    test = _logits(base, params, data.x_test)
    out = [metrics.evaluate(test[j], data.y_test) for j in range(k)]
    if logits is not None:
        logits["test"] = test
    if data.x_val is not None:
        val = _logits(base, params, data.x_val)
        if logits is not None:
            logits["val"] = val
        for j in range(k):
            out[j].update({f"val_{key}": v for key, v in metrics.evaluate(val[j], data.y_val).items()})
    noisy = data.noisy
    if noisy is not None:
        pred = _logits(base, params, data.x_train[noisy]).argmax(-1)         # (k, m)
        count = max(int(noisy.sum()), 1)
        fitted = (pred == data.y_train[noisy]).sum(1).tolist()
        clean = (pred == data.y_train_clean[noisy]).sum(1).tolist()
        for j in range(k):
            out[j].update(noisy_fitted=fitted[j] / count, noisy_clean=clean[j] / count)
    return out



def run_all(jobs: Mapping[Any, Mapping[str, Any]], *, workers: int = 1, fn: Callable[..., Any] | None = None) -> dict:
    """Run several :func:`repeat` calls (or calls of ``fn``), in ``workers`` processes when ``workers > 1``.

    A population spends its time in Python dispatch, one core's worth; independent populations
    (regimes, data sets) therefore run side by side on a multi-core machine. The workers are
    started with ``spawn`` (safe with torch's thread pools) and use one intra-op thread each;
    the jobs' arguments must pickle (use ``functools.partial(models.MLP, ...)`` for ``model_fn``,
    not a lambda). Results do not depend on ``workers``.

    Args:
        jobs: ``{key: keyword arguments of repeat}`` (of ``fn``, when given); a job may instead be a
            zero-argument callable, run as it is, so other work shares the pool, e.g.
            ``functools.partial(mixbook.chapters.gan.train, "mixup", seeds=[0, 1])``.
        workers: processes, ≥ 1 (1: in this process, one after another).
        fn: the function each job calls instead of :func:`repeat`, e.g.
            ``mixbook.chapters.manifold_gradient.repeat_decomposed``; with ``workers > 1`` it must be importable
            (a module-level function), as the jobs' arguments must pickle.

    Returns:
        ``{key: what repeat returned}``, in the order of ``jobs``.

    Raises:
        JobsFailed: a job raised, or its worker died (the OOM killer, a signal: the pool is then
            broken and the jobs not yet done fail too). Its ``finished`` holds the results of the
            jobs that completed, ``failed`` the error of each other job; in one process the jobs
            after the first failure are not run.
    """
    workers = _checks.positive_int("workers", workers)
    if not isinstance(jobs, Mapping):
        raise TypeError(f"jobs must be a mapping {{key: repeat keyword arguments}}, got {type(jobs).__name__}")
    if fn is None:
        fn = repeat
    elif not callable(fn):
        raise TypeError(f"fn must be a callable, got {type(fn).__name__}")
    for key, job in jobs.items():
        if not (isinstance(job, Mapping) or callable(job)):
            raise TypeError(f"jobs[{key!r}] must be a mapping of keyword arguments or a zero-argument callable, "
                            f"got {type(job).__name__}")
    if workers == 1 or len(jobs) <= 1:
        finished: dict = {}
        for key, job in jobs.items():
            try:
                finished[key] = _run_job(fn, job)
            except Exception as err:       # noqa: BLE001 - reported with the finished jobs
                raise JobsFailed(finished, {key: err}) from err
        return finished
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    for key, kwargs in [("fn", fn), *jobs.items()]:
        try:
            pickle.dumps(kwargs)
        except Exception as err:  # pickling errors have no common base class
            raise TypeError(f"jobs[{key!r}] cannot be sent to a worker process ({err}); pass importable "
                            "functions (functools.partial of a model class), not lambdas") from err
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx, initializer=torch.set_num_threads,
                             initargs=(1,)) as pool:
        futures = {key: pool.submit(_run_job, fn, job) for key, job in jobs.items()}
        finished, failed = {}, {}
        for key, future in futures.items():
            try:
                finished[key] = future.result()
            except Exception as err:       # noqa: BLE001 - a job's error, or BrokenProcessPool
                failed[key] = err
    if failed:
        raise JobsFailed(finished, failed) from next(iter(failed.values()))
    return finished


class JobsFailed(RuntimeError):
    """Some jobs of :func:`run_all` failed: ``finished`` ``{key: result}`` of those that completed, ``failed``
    ``{key: exception}`` of the others (a dead worker shows as ``BrokenProcessPool``)."""

    def __init__(self, finished: dict, failed: dict) -> None:
        shown = "; ".join(f"{key!r}: {type(err).__name__}: {err}" for key, err in failed.items())
        super().__init__(f"{len(failed)} job(s) failed ({shown}); {len(finished)} finished, their results are in "
                         f".finished: {list(finished)}")
        self.finished, self.failed = finished, failed


def _run_job(fn: Callable[..., Any], job: Mapping[str, Any] | Callable[[], Any]) -> Any:
    return fn(**job) if isinstance(job, Mapping) else job()
