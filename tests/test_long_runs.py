"""Issue 31: long runs that survive interruption and bad values.

``fit`` checkpoints and resumes to the same weights and history as an uninterrupted run (SIGKILL
between epochs, SIGTERM and SIGINT inside one), refuses non-finite settings and stops on a
non-finite loss; ``population.run_all`` keeps the jobs that finished; a stopped gloo rank makes
the other fail within the process-group timeout; Beta/Dirichlet draws are never NaN for an
accepted α; non-finite inputs and oversized dense mixings are refused. (Result files:
tests/test_results.py; the CIFAR grid's parts, resume and overwrite: tests/test_cifar_grid.py.)
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mixbook
from mixbook.core.distributions import beta, dirichlet
from mixbook.training import data, models, population, train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _fit_in_a_process(tmp_path, method, checkpoint, name, kill_at=0, sig=0):
    out = tmp_path / f"{name}.pt"
    cmd = [sys.executable, str(HERE / "_fit_worker.py"), method, str(checkpoint), str(out)]
    if kill_at:
        cmd += [str(kill_at), str(int(sig))]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    return res, (torch.load(out) if out.exists() else None)


# steps per epoch: 192 training examples (240 less a validation fifth) in batches of 32 -> 6
@pytest.mark.parametrize("method", ["mixup", "manifold_mixup"])
def test_a_killed_or_terminated_run_resumes_to_the_same_weights_and_history(tmp_path, method):
    _, reference = _fit_in_a_process(tmp_path, method, "-", "reference")
    # SIGKILL at the first step of epoch 3: the checkpoint of epoch 2 is what is left
    res, _ = _fit_in_a_process(tmp_path, method, tmp_path / "kill.pt", "killed", kill_at=13, sig=signal.SIGKILL)
    assert res.returncode == -signal.SIGKILL and (tmp_path / "kill.pt").exists()
    res, resumed = _fit_in_a_process(tmp_path, method, tmp_path / "kill.pt", "resumed")
    assert res.returncode == 0, res.stderr[-2000:]
    # SIGTERM inside epoch 2: the step finishes, the checkpoint holds the position inside the epoch
    res, _ = _fit_in_a_process(tmp_path, method, tmp_path / "term.pt", "terminated", kill_at=9, sig=signal.SIGTERM)
    assert res.returncode == 143 and "SIGTERM at epoch 2, step 3; checkpoint written to" in res.stderr
    res, after_term = _fit_in_a_process(tmp_path, method, tmp_path / "term.pt", "after_term")
    assert res.returncode == 0, res.stderr[-2000:]
    for got in (resumed, after_term):
        diff = max(float((reference["weights"][k] - got["weights"][k]).abs().max()) for k in reference["weights"])
        print(f"{method}: max parameter difference after a resume {diff:.3g}; histories equal: "
              f"{got['history'] == reference['history']}")
        assert diff == 0.0
        assert got["history"] == reference["history"] and len(got["history"]) == 4


def _split():
    return data.two_moons(n_train=96, n_test=32, seed=0)


def test_sigint_checkpoints_and_interrupts_and_a_plain_interrupt_keeps_the_history(tmp_path):
    steps = {"n": 0}

    def interrupt_at_5(x, g):
        steps["n"] += 1
        if steps["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return x

    torch.manual_seed(0)
    net = models.MLP(2, 2, (8,))
    with pytest.raises(KeyboardInterrupt, match=r"SIGINT at epoch 2, step 2; checkpoint written to .*ck.pt"):
        train.fit(net, _split(), "mixup", epochs=3, batch_size=32, progress=False, device="cpu", augment=interrupt_at_5,
                  checkpoint=tmp_path / "ck.pt")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler           # the handlers come back
    steps["n"] = -100
    hist = train.fit(net, _split(), "mixup", epochs=3, batch_size=32, progress=False, device="cpu",
                     augment=interrupt_at_5, checkpoint=tmp_path / "ck.pt")
    assert [e["epoch"] for e in hist.epochs] == [1, 2, 3]

    def raise_at_4(x, g):
        steps["n"] += 1
        if steps["n"] == 4:
            raise KeyboardInterrupt
        return x

    steps["n"] = 0
    with pytest.raises(KeyboardInterrupt) as err:
        train.fit(models.MLP(2, 2, (8,)), _split(), "mixup", epochs=3, batch_size=32, progress=False, device="cpu",
                  augment=raise_at_4)
    assert [e["epoch"] for e in err.value.history.epochs] == [1]                     # the run so far


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    kw = dict(epochs=1, batch_size=32, progress=False, device="cpu", checkpoint=tmp_path / "ck.pt")
    train.fit(models.MLP(2, 2, (8,)), _split(), "mixup", lr=1e-3, **kw)
    with pytest.raises(ValueError, match=r"belongs to another run \(lr: 0.001 there, 0.01 here\)"):
        train.fit(models.MLP(2, 2, (8,)), _split(), "mixup", lr=1e-2, **kw)
    (tmp_path / "ck.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        train.fit(models.MLP(2, 2, (8,)), _split(), "mixup", lr=1e-3, **kw)


def test_non_finite_settings_are_refused_before_training():
    for bad in (dict(weight_decay=float("inf")), dict(weight_decay=float("nan")), dict(lr=float("nan")),
                dict(lr=float("inf"))):
        with pytest.raises(ValueError, match="weight_decay|lr"):
            train.fit(models.MLP(2, 2, (8,)), _split(), "erm", epochs=1, progress=False, device="cpu", **bad)


def test_a_non_finite_loss_stops_the_run_naming_epoch_and_step():
    split = _split()
    x = split.x_train.clone()
    x[:] = torch.where(torch.arange(len(x))[:, None] == 50, float("nan"), x)   # one bad example
    bad = data.Split(x, split.y_train, split.x_test, split.y_test, split.num_classes)
    torch.manual_seed(0)
    net = models.MLP(2, 2, (8,))
    with pytest.raises(train.NonFiniteLoss, match=r"not finite \(nan\) at epoch 1, step \d") as err:
        train.fit(net, bad, "erm", epochs=2, batch_size=16, progress=False, device="cpu")
    assert err.value.epoch == 1
    assert all(bool(torch.isfinite(p).all()) for p in net.parameters())            # the bad step was not taken
    hist = train.fit(models.MLP(2, 2, (8,)), bad, "erm", epochs=2, batch_size=16, progress=False, device="cpu",
                     on_nonfinite="record")
    assert [e.get("nonfinite_steps") for e in hist.epochs][0] >= 1


def test_run_all_returns_the_finished_jobs_when_one_fails_or_its_worker_dies():
    import _long_run_jobs as jobs

    with pytest.raises(population.JobsFailed, match=r"1 job\(s\) failed .*'c': BrokenProcessPool") as err:
        population.run_all({"a": functools.partial(jobs.square, 3), "b": functools.partial(jobs.square, 4),
                            "c": functools.partial(jobs.killed, 2.0)}, workers=2)
    assert err.value.finished == {"a": 9, "b": 16}
    with pytest.raises(population.JobsFailed, match="this job fails") as err:
        population.run_all({"a": functools.partial(jobs.square, 2), "b": jobs.fails, "c": functools.partial(jobs.square, 5)})
    assert err.value.finished == {"a": 4} and isinstance(err.value.failed["b"], ValueError)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stopped_gloo_rank_fails_the_other_within_the_timeout():
    timeout_s = 10.0
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**ENV, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, str(HERE / "_hang_worker.py"), str(timeout_s)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    start = time.monotonic()
    try:
        out, _ = procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    wall = time.monotonic() - start
    print(out[-600:])
    assert procs[0].returncode == 3, out[-2000:]
    waited = float(out.split("FAILED after ")[1].split(" s")[0])
    assert waited < timeout_s + 10, out                                                # not gloo's 30 minutes
    assert wall < 120


@pytest.mark.parametrize("alpha", [1e-30, 1e-12, 1e-3, 1e3, 1e12, 1e30])
def test_beta_and_dirichlet_draws_are_finite_for_every_accepted_alpha(alpha):
    g = torch.Generator().manual_seed(0)
    lam = beta(alpha, alpha, (4096,), generator=g)
    w = dirichlet(alpha, (256, 16), generator=g)
    assert bool(torch.isfinite(lam).all()) and bool(((lam >= 0) & (lam <= 1)).all())
    assert bool(torch.isfinite(w).all())
    torch.testing.assert_close(w.sum(1), torch.ones(256))
    x = torch.rand(16, 3, 4, 4)
    for t in (mixbook.MixUp(alpha=alpha, num_classes=3, generator=g), mixbook.MultiMix(alpha=alpha, num_classes=3,
                                                                                         generator=g)):
        assert bool(torch.isfinite(t(x, torch.randint(0, 3, (16,)))[0]).all())


@pytest.mark.parametrize("alpha", [5e-324, 1e-44, 1e-39, 3.5e38, 1e300])
def test_an_alpha_float32_cannot_draw_names_alpha_and_the_range(alpha):
    for make in (lambda: mixbook.MixUp(alpha=alpha, num_classes=3), lambda: mixbook.MultiMix(alpha=alpha, num_classes=3),
                 lambda: beta(alpha, 1.0, (2,)), lambda: dirichlet(alpha, (2, 2))):
        with pytest.raises(ValueError, match=r"(alpha|\ba\b) must lie in \[1e-30, 1e\+30\]"):
            make()


def test_non_finite_inputs_are_refused_when_values_are_checked():
    x = torch.rand(64, 3, 4, 4)
    x[7, 0, 0, 0] = float("nan")
    y = torch.randint(0, 3, (64,))
    spread = mixbook.MultiMix(num_classes=3, generator=torch.Generator().manual_seed(0))(x, y)[0]
    assert bool((~torch.isfinite(spread)).any(dim=(1, 2, 3)).all())               # by default: one bad spreads to all
    with mixbook.value_checks("always"):
        for t in (mixbook.MultiMix(num_classes=3), mixbook.ZetaMixup(num_classes=3)):
            with pytest.raises(ValueError, match=r"1 of its 64 examples\. A dense mixing .* non-finite"):
                t(x, y)
        with pytest.raises(ValueError, match=r"x holds 1 NaN or infinite value"):
            mixbook.MixUp(num_classes=3)(x, y)


def test_dense_mixings_refuse_an_allocation_beyond_the_devices_memory():
    from mixbook.methods import multimix, zeta

    with pytest.raises(ValueError, match=r"MultiMix weights \(n, b\) of shape \(1000000, 100000\).* GiB, more than 50%"):
        multimix.weights(100_000, n=1_000_000)
    with pytest.raises(ValueError, match=r"ζ-mixup weights \(n, b\) of shape \(100000, 200000\)"):
        zeta.weights(200_000, n=100_000)
    base = torch.rand(1, 1, 1).expand(64, 100_000, 4096)                             # a view: no memory
    with pytest.raises(ValueError, match=r"Dense MultiMix weights \(r, n, b\) of shape \(64, 100000, 4096\)"):
        multimix.dense_weights(base, torch.ones(4096, 64))


def test_chapter_parameters_refuse_nan_and_infinity_in_the_parameters_cell():
    from mixbook.chapters import notebook as nb

    for value, kind in ((float("nan"), nb.positive(float)), (float("inf"), nb.at_least(float, 0)),
                        (float("-inf"), float), ([0.1, float("nan")], nb.positive(list[float]))):
        with pytest.raises(ValueError, match=r"parameter 'lr' must be finite"):
            nb.check_parameters({"lr": value}, lr=kind)
    assert nb.check_parameters({"lr": 0.1}, lr=nb.positive(float)) == {"lr": 0.1}
