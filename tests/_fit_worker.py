"""One ``fit`` run for tests/test_long_runs.py, in its own process so that it can be killed:
``python _fit_worker.py METHOD CHECKPOINT|- OUT [KILL_AT SIGNAL]``. With ``KILL_AT``, the process sends itself
``SIGNAL`` at that training step (counted over the whole run, through ``augment``, which draws nothing).
Writes the final weights and the history (without its timings) to ``OUT``."""

import os
import sys

import torch

from mixbook.training import data, models, train

if __name__ == "__main__":
    method, checkpoint, out = sys.argv[1:4]
    kill_at, sig = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (0, 0)
    steps = {"n": 0}

    def augment(x, generator):
        steps["n"] += 1
        if steps["n"] == kill_at:
            os.kill(os.getpid(), sig)
        return x

    torch.manual_seed(0)
    net = models.MLP(2, 2, (16, 16))
    method_obj = train.make_method("manifold_mixup", layers=["input", "features.1", "features.3"], alpha=2.0,
                                   seed=5) if method == "manifold_mixup" else method
    hist = train.fit(net, data.validation_split(data.two_moons(n_train=240, n_test=100, seed=0)), method_obj,
                     epochs=4, batch_size=32, seed=3, progress=False, augment=augment, device="cpu",
                     checkpoint=None if checkpoint == "-" else checkpoint)
    torch.save({"weights": net.state_dict(),
                "history": [{k: v for k, v in e.items() if k != "seconds"} for e in hist.epochs]}, out)
