"""A user's torchrun DDP script (gloo on CPU): DistributedSampler, DDP, Adam."""
import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--slow-rank", type=int, default=-1, help="this rank sleeps --slow seconds before each backward")
    ap.add_argument("--slow", type=float, default=0.0)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    n = args.steps * args.batch * world
    data = TensorDataset(torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)))
    sampler = DistributedSampler(data, num_replicas=world, rank=rank)
    loader = DataLoader(data, batch_size=args.batch, sampler=sampler, num_workers=0)
    model = DDP(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in loader:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        if rank == args.slow_rank:
            import time
            time.sleep(args.slow)          # a straggler: the other rank waits for it in the all-reduce
        loss.backward()
        opt.step()
        if args.sleep:
            import time
            time.sleep(args.sleep)
    if rank == 0:
        print(f"done on {world} ranks (pid {os.getpid()})")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
