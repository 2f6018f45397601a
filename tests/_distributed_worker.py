"""One rank of tests/test_distributed.py: ``python _distributed_worker.py RANK WORLD STORE OUT BACKEND``.

Joins a process group through a ``FileStore`` (no ports), runs the scenarios below with
``mixbook.training.train.fit`` and writes what the test checks to ``OUT/rank{RANK}.pt``.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

import mixbook
from mixbook.training import data, models, train
from mixbook.methods import mixup

N_TRAIN, BATCH, EPOCHS, SEED = 64, 8, 2, 3
GLOBAL = ("mixup", "multimix")   # methods run with GlobalBatch


class Recording:
    """A method that records the rows of every batch (and mixup's λ) and delegates to ``inner``."""

    def __init__(self, inner: str) -> None:
        self.inner = train.make_method(inner)
        self.batches: list[torch.Tensor] = []
        self.lams: list[torch.Tensor] = []

    def loss(self, model, x, y, num_classes, generator):
        self.batches.append(x.detach().cpu().clone())
        if getattr(self.inner, "name", None) == "mixup":
            if not self.lams:
                self.first = (x.detach().cpu().clone(), y.detach().cpu().clone())
            state = generator.get_state()
            self.lams.append(mixup.sample(x, y, alpha=1.0, generator=generator).lam.cpu())
            generator.set_state(state)       # the inner method draws the same λ
        return self.inner.loss(model, x, y, num_classes, generator)

    def __repr__(self) -> str:
        return f"Recording({self.inner!r})"


def main(rank: int, world: int, store: str, out: str, backend: str) -> None:
    device = f"cuda:{rank}" if backend == "nccl" else "cpu"   # one GPU a rank
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, store=dist.FileStore(store, world), rank=rank, world_size=world)
    try:
        moons = data.two_moons(n_train=N_TRAIN, n_test=40, seed=0)
        result: dict = {}

        # ERM: the parameters after training, the batches seen, the history
        torch.manual_seed(0)
        net = models.MLP(2, 2, (16, 16))
        erm = Recording("erm")
        hist = train.fit(net, moons, erm, epochs=EPOCHS, batch_size=BATCH, lr=1e-2, seed=SEED,
                         device=device, progress=False)
        result["erm_params"] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        result["erm_batches"] = erm.batches
        result["erm_history"] = hist.epochs

        # mixup: the per-rank λ of fit's mixing stream
        torch.manual_seed(0)
        mix = Recording("mixup")
        train.fit(models.MLP(2, 2, (16,)), moons, mix, epochs=1, batch_size=BATCH, seed=SEED, device=device,
                  progress=False)
        result["mixup_lams"] = torch.stack(mix.lams)
        result["mixup_first_batch"] = mix.first

        # a transform's stream inside the group
        mixer = mixbook.MixUp(alpha=1.0, num_classes=2, generator=torch.Generator().manual_seed(0))
        x, y = torch.randn(8, 2), torch.arange(8) % 2
        result["transform_targets"] = mixer(x, y)[1]

        # layer paths through DDP: MultiMix at "features", manifold mixup at "features.1"
        torch.manual_seed(0)
        hist = train.fit(models.MLP(2, 2, (16,)), moons, "multimix", epochs=1, batch_size=BATCH, seed=SEED,
                         device=device, progress=False)
        result["multimix_accuracy"] = hist.final["accuracy"]
        torch.manual_seed(0)
        method = train.make_method("manifold_mixup", layers=["input", "features.1"])
        hist = train.fit(models.MLP(2, 2, (16,)), moons, method, epochs=1, batch_size=BATCH, seed=SEED,
                         device=device, progress=False)
        result["manifold_accuracy"] = hist.final["accuracy"]
        # global-batch mixing: fit runs, and one step's loss and gradients
        from mixbook.training.distributed import GlobalBatch

        for name in GLOBAL:
            torch.manual_seed(0)
            net = models.MLP(2, 2, (16, 16))
            train.fit(net, moons, GlobalBatch(name, seed=SEED), epochs=EPOCHS, batch_size=BATCH, lr=1e-2,
                      seed=SEED, device=device, progress=False)
            result[f"global_{name}_params"] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
            torch.manual_seed(0)
            net = models.MLP(2, 2, (16, 16)).to(device)
            ddp = torch.nn.parallel.DistributedDataParallel(net)
            x, y = moons.x_train[:2 * BATCH].to(device), moons.y_train[:2 * BATCH].to(device)
            loss = GlobalBatch(name, seed=SEED).loss(ddp, x[rank::world], y[rank::world], 2, None)
            loss.backward()
            total = loss.detach().clone()
            dist.all_reduce(total)
            result[f"global_{name}_step"] = (float(total) / world,
                                             {k: p.grad.detach().cpu() for k, p in net.named_parameters()})
        # fit on the user's DataLoader with a DistributedSampler: DDP, set_epoch, reduced loss
        from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

        dataset = TensorDataset(moons.x_train, moons.y_train)
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=SEED)
        torch.manual_seed(0)
        net = models.MLP(2, 2, (16,))
        hist = train.fit(net, DataLoader(dataset, batch_size=BATCH, sampler=sampler), "mixup", num_classes=2,
                         test=moons, epochs=EPOCHS, lr=1e-2, seed=SEED, device=device, progress=False)
        result["loader_params"] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        result["loader_history"] = [{k: v for k, v in e.items() if k != "seconds"} for e in hist.epochs]
        result["loader_epoch"] = sampler.epoch
        torch.save(result, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
