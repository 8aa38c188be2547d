"""A user's plain training script: own model, own loop, DataLoader with a worker, SGD."""
import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16 * 16, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = nn.functional.max_pool2d(x, 2)
        return self.fc(x.flatten(1))


def fill(path):
    """Write zeros to `path` until the disk is full (a disk filling under a running job)."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(1 << 16))
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--fail-at", type=int, default=-1)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=1, help="passes over the --steps batches")
    ap.add_argument("--fill-at", type=int, default=-1, help="at this step, fill the disk of --fill-path")
    ap.add_argument("--fill-path", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(args.steps * args.batch, 3, 32, 32), torch.randint(0, 10, (args.steps * args.batch,)))
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, num_workers=args.workers)
    model = Small()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    i = -1
    for _ in range(args.epochs):
        for x, y in loader:
            i += 1
            if i == args.fail_at:
                raise RuntimeError(f"deliberate failure at step {i}")
            if i == args.fill_at:
                fill(args.fill_path)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if args.sleep:
                import time
                time.sleep(args.sleep)
    print(f"done: {i + 1} steps, loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
