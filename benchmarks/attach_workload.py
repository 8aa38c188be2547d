"""The script `benchmarks/overhead.py --attached` runs plain and under profiler.attach: a user's
seed-style training loop (6 conv + 3 linear, Adam, a DataLoader) that imports nothing of scalescope
and prints its own per-step times as one JSON line."""
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DIV = int(sys.argv[1]) if len(sys.argv) > 1 else 8      # channels ÷ DIV (1: the seed model)
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
BATCH = int(sys.argv[3]) if len(sys.argv) > 3 else 16


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        c = [max(1, n // DIV) for n in (48, 96, 192, 256, 512, 1024)]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip([3, *c[:-1]], c))
        self.fc1, self.fc2, self.fc3 = nn.Linear(c[5] * 8 * 8, 2048 // DIV), nn.Linear(2048 // DIV, 64), nn.Linear(64, 10)

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i in (1, 5):
                x = F.max_pool2d(x, 2)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


torch.manual_seed(0)
data = TensorDataset(torch.randn(STEPS * BATCH, 3, 32, 32), torch.randint(0, 10, (STEPS * BATCH,)))
loader = DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=0)
model = Net()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
times = []
t = time.perf_counter()
for x, y in loader:
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    now = time.perf_counter()
    times.append(now - t)
    t = now
print(json.dumps({"step_s": times, "parameters": sum(p.numel() for p in model.parameters())}))
