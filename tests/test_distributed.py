"""``mixbook.training.train.fit`` across processes (issue 17): two gloo ranks on the CPU, spawned here.

One launch of tests/_distributed_worker.py per backend (two subprocesses joined through a
``FileStore``, bounded by a deadline and killed on failure); the tests read what the ranks
wrote. The reference one-process run is computed in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mixbook.training import data, models, train
from mixbook.methods import mixup

WORKER = Path(__file__).with_name("_distributed_worker.py")
DEADLINE_S = 100
WORLD = 2


def launch(tmp: Path, backend: str, world: int = WORLD) -> list[dict]:
    """Run ``world`` ranks of the worker; their results, or a failure with every rank's output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("RANK", None)
    store = tmp / "store"
    logs = [open(tmp / f"rank{r}.log", "w+") for r in range(world)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(store), str(tmp), backend],
                              stdout=logs[r], stderr=subprocess.STDOUT, env={**env, "LOCAL_RANK": str(r)})
             for r in range(world)]
    deadline = time.monotonic() + DEADLINE_S
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline or any(p.returncode not in (None, 0) for p in procs):
                break
            time.sleep(0.1)
    finally:
        for p in procs:                           # a hung or orphaned rank never outlives the test
            if p.poll() is None:
                p.kill()
                p.wait()
    output = ""
    for r, log in enumerate(logs):
        log.seek(0)
        output += f"--- rank {r} (exit {procs[r].returncode})\n{log.read()[-4000:]}\n"
        log.close()
    if any(p.returncode != 0 for p in procs):
        pytest.fail(f"distributed ranks failed or ran past {DEADLINE_S} s:\n{output}")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="module")
def gloo_ranks(tmp_path_factory):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    return launch(tmp_path_factory.mktemp("gloo"), "gloo")


def moons():
    sys.path.insert(0, str(WORKER.parent))
    import _distributed_worker as w

    return w, data.two_moons(n_train=w.N_TRAIN, n_test=40, seed=0)


def test_parameters_identical_across_ranks(gloo_ranks):
    a, b = (r["erm_params"] for r in gloo_ranks)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert gloo_ranks[0]["erm_history"] == [
        {**e, "seconds": gloo_ranks[0]["erm_history"][i]["seconds"]} for i, e in enumerate(gloo_ranks[1]["erm_history"])
    ]


def test_fit_on_a_distributed_loader(gloo_ranks):
    """A user's DataLoader with a DistributedSampler: the ranks end with the same weights and the
    same history (loss reduced over the ranks, metrics from the gathered logits), set_epoch ran."""
    r0, r1 = gloo_ranks
    for k, v in r0["loader_params"].items():
        assert torch.equal(v, r1["loader_params"][k]), k
    assert r0["loader_history"] == r1["loader_history"] and "accuracy" in r0["loader_history"][-1]
    assert r0["loader_epoch"] == r1["loader_epoch"] == len(r0["loader_history"]) - 1


def test_ranks_see_disjoint_shards_covering_the_data(gloo_ranks):
    w, split = moons()
    steps = -(-w.N_TRAIN // (w.BATCH * WORLD))

    def indices(batch):   # the training rows of a batch, by exact match
        hits = (batch[:, None, :] == split.x_train[None]).all(-1)
        assert (hits.sum(1) == 1).all()
        return hits.int().argmax(1)

    for epoch in range(w.EPOCHS):
        seen = [torch.cat([indices(b) for b in r["erm_batches"][epoch * steps:(epoch + 1) * steps]])
                for r in gloo_ranks]
        assert set(seen[0].tolist()).isdisjoint(seen[1].tolist())
        assert sorted(torch.cat(seen).tolist()) == list(range(w.N_TRAIN))
        if epoch:
            assert not torch.equal(seen[0], previous), "a fresh shuffle every epoch"
        previous = seen[0]


def test_per_rank_mixing_streams_differ(gloo_ranks):
    a, b = (r["mixup_lams"] for r in gloo_ranks)
    assert a.shape == b.shape and not torch.allclose(a, b)
    # reproducible: rank r's first λ is the first draw of generators(seed, rank=r)'s mixing stream
    w, _ = moons()
    for rank, r in enumerate(gloo_ranks):
        _, gen = train.generators(w.SEED, "cpu", rank=rank)
        x0, y0 = r["mixup_first_batch"]
        assert torch.equal(mixup.sample(x0, y0, alpha=1.0, generator=gen).lam, r["mixup_lams"][0])
    assert not torch.equal(gloo_ranks[0]["transform_targets"], gloo_ranks[1]["transform_targets"])


def test_layer_paths_resolve_through_ddp(gloo_ranks):
    for r in gloo_ranks:
        assert 0.0 <= r["multimix_accuracy"] <= 1.0 and 0.0 <= r["manifold_accuracy"] <= 1.0


def test_two_ranks_equal_one_process_on_the_same_global_batches(gloo_ranks):
    w, split = moons()
    torch.manual_seed(0)
    net = models.MLP(2, 2, (16, 16))
    hist = train.fit(net, split, "erm", epochs=w.EPOCHS, batch_size=w.BATCH * WORLD, lr=1e-2, seed=w.SEED,
                     device="cpu", progress=False)
    ref = net.state_dict()
    err = max(float((gloo_ranks[0]["erm_params"][k] - ref[k]).abs().max()) for k in ref)
    print(f"max |2-rank - 1-process| parameter difference: {err:.3g}")
    assert err < 1e-5
    for two, one in zip(gloo_ranks[0]["erm_history"], hist.epochs):
        assert two["train_loss"] == pytest.approx(one["train_loss"], abs=1e-5)
        assert two["accuracy"] == pytest.approx(one["accuracy"], abs=1e-9)
        assert two["nll"] == pytest.approx(one["nll"], abs=1e-5)


@pytest.mark.parametrize("name", ["mixup", "multimix"])
def test_global_batch_mixing_equals_one_process_on_the_concatenated_batch(gloo_ranks, name):
    w, split = moons()
    # one step, the same W: the mean of the ranks' losses and the DDP gradient
    torch.manual_seed(0)
    net = models.MLP(2, 2, (16, 16))
    x, y = split.x_train[:2 * w.BATCH], split.y_train[:2 * w.BATCH]
    loss = train.make_method(name).loss(net, x, y, 2, train.generators(w.SEED)[1])
    loss.backward()
    value, grads = gloo_ranks[0][f"global_{name}_step"]
    assert value == pytest.approx(float(loss.detach()), abs=1e-6)
    err = max(float((grads[k] - p.grad).abs().max()) for k, p in net.named_parameters())
    print(f"global-batch {name}: one-step max gradient difference {err:.3g}")
    assert err < 1e-6
    # whole runs: 2 ranks of batch b with GlobalBatch = one process of batch 2b
    torch.manual_seed(0)
    net = models.MLP(2, 2, (16, 16))
    train.fit(net, split, name, epochs=w.EPOCHS, batch_size=w.BATCH * WORLD, lr=1e-2, seed=w.SEED, device="cpu",
              progress=False)
    for r in gloo_ranks:
        err = max(float((r[f"global_{name}_params"][k] - v).abs().max()) for k, v in net.state_dict().items())
        print(f"global-batch {name}: max |2-rank - 1-process| parameter difference {err:.3g}")
        assert err < 1e-4


def test_readme_example_under_torchrun(tmp_path):
    import re
    import signal

    readme = (WORKER.parents[1] / "README.md").read_text()
    example = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "torchrun" in b)
    (tmp_path / "ddp_moons.py").write_text(example)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
                             "ddp_moons.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)           # torchrun and its ranks
        out, _ = proc.communicate()
        pytest.fail(f"torchrun ran past {DEADLINE_S} s:\n{out[-4000:]}")
    assert proc.returncode == 0, out[-4000:]
    assert "train_loss" in out and (tmp_path / "moons_mixup.pt").exists()
    assert out.count("train_loss") == 1, "rank 0 only reports"


@pytest.mark.gpu
def test_nccl_ranks_equal_one_process(tmp_path):
    """NCCL, one rank per GPU (as many as there are, at most two): identical parameters across
    ranks, equal to one CUDA process on the same global batches.

    The reference runs on CUDA, not on the CPU: ``fit`` draws the data order from a generator on
    the training device, and CUDA's random streams differ from the CPU's by design, so a CPU run
    sees other batches. On one device type the order stream is the same for one process and for
    every rank (``train.generators`` / ``_rank_streams``), each rank takes every ``world``-th
    example of the global batch, and DDP averages the ranks' gradients: equal to the one
    process's up to floating-point rounding (ERM draws nothing else)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    world = min(torch.cuda.device_count(), WORLD)
    ranks = launch(tmp_path, "nccl", world)
    w, split = moons()
    torch.manual_seed(0)
    net = models.MLP(2, 2, (16, 16))
    hist = train.fit(net, split, "erm", epochs=w.EPOCHS, batch_size=w.BATCH * world, lr=1e-2, seed=w.SEED,
                     device="cuda", progress=False)
    ref = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    for k, v in ref.items():
        assert all(torch.equal(r["erm_params"][k], ranks[0]["erm_params"][k]) for r in ranks), k
        err = float((ranks[0]["erm_params"][k] - v).abs().max())
        assert err < 1e-4, (k, err)
    for ranked, one in zip(ranks[0]["erm_history"], hist.epochs, strict=True):   # the loss reduced over the ranks
        assert ranked["train_loss"] == pytest.approx(one["train_loss"], abs=1e-4)
