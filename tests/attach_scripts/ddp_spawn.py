"""A user's DDP script in the style of PyTorch's DDP tutorial: ranks from torch.multiprocessing.spawn
(`--launch spawn`, the default), torch.multiprocessing.start_processes (`--launch start_processes`) or
multiprocessing.Process (`--launch process-fork` / `process-spawn` / `process-forkserver`, Python 3.14's
default on Linux); gloo on CPU (`--device cuda`: NCCL,
rank r on GPU r), DistributedSampler, Adam."""
import argparse
import multiprocessing
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def train(rank, world, args):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    torch.set_num_threads(1)
    cuda = args.device == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    n = args.steps * args.batch * world
    data = TensorDataset(torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)))
    sampler = DistributedSampler(data, num_replicas=world, rank=rank)
    loader = DataLoader(data, batch_size=args.batch, sampler=sampler, num_workers=args.workers)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10)).to(device)
    model = DDP(net, device_ids=[rank] if cuda else None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if args.sleep:
            time.sleep(args.sleep)
    if rank == 0:
        print(f"done on {world} ranks", flush=True)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--launch", default="spawn", choices=["spawn", "start_processes", "process-fork", "process-spawn", "process-forkserver"])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=29511)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    if args.launch == "spawn":
        mp.spawn(train, args=(args.world, args), nprocs=args.world, join=True)
    elif args.launch == "start_processes":
        mp.start_processes(train, args=(args.world, args), nprocs=args.world, join=True, start_method="spawn")
    else:
        ctx = multiprocessing.get_context(args.launch.split("-")[1])
        procs = [ctx.Process(target=train, args=(r, args.world, args)) for r in range(args.world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            raise SystemExit(f"a rank failed: {[p.exitcode for p in procs]}")


if __name__ == "__main__":
    main()
