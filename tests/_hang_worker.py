"""A rank of a 2-rank gloo group, joined by mixbook.training.distributed.init_from_env with a short timeout;
rank 1 stops itself (SIGSTOP, as a hung or preempted process would) and rank 0 trains: rank 0 must fail within
the timeout (tests/test_long_runs.py). Prints ``FAILED after <s> s: <error>`` and exits 3 when it does."""

import os
import signal
import sys
import time

import torch

from mixbook.training import data, distributed, models, train

if __name__ == "__main__":
    timeout_s = float(sys.argv[1])
    assert distributed.init_from_env(timeout_minutes=timeout_s / 60)
    rank = torch.distributed.get_rank()
    t = torch.ones(1)
    torch.distributed.all_reduce(t)                      # both ranks are alive here
    print(f"rank {rank}: joined", flush=True)
    if rank == 1:
        os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(0.5)
    start = time.monotonic()
    try:
        torch.manual_seed(0)
        train.fit(models.MLP(2, 2, (8,)), data.two_moons(n_train=64, n_test=32), "mixup", epochs=1, batch_size=16,
                  progress=False, device="cpu")
    except Exception as err:                              # noqa: BLE001 - what the test looks for
        print(f"FAILED after {time.monotonic() - start:.1f} s: {type(err).__name__}: {str(err)[:200]}", flush=True)
        sys.exit(3)
    print("trained without the other rank", flush=True)
