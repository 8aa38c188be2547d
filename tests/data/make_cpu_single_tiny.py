"""Regenerate tests/data/cpu_single_tiny.pt.trace.json.gz: a real CPU torch.profiler trace.

Tiny CNN, 2 profiled steps, the runner's phase labels (profiler.contract.vocab) around each
phase, exported gzipped. Run from the repo root:
    .venv/bin/python tests/data/make_cpu_single_tiny.py
"""
import gzip, shutil, tempfile
from pathlib import Path
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule
from profiler.contract import vocab

torch.manual_seed(0); torch.set_num_threads(1)
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
opt = torch.optim.Adam(model.parameters())
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))), batch_size=4)
out = Path(__file__).with_name("cpu_single_tiny.pt.trace.json.gz")
with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=1, warmup=1, active=2)) as prof:
    it = iter(loader)
    for _ in range(4):
        with record_function(vocab.DATA_WAIT): x, y = next(it)
        with record_function(vocab.H2D): x, y = x.to("cpu"), y.to("cpu")
        with record_function(vocab.FORWARD): logits = model(x)
        with record_function(vocab.LOSS): loss = nn.functional.cross_entropy(logits, y)
        with record_function(vocab.BACKWARD): loss.backward()
        with record_function(vocab.OPTIMIZER): opt.step(); opt.zero_grad()
        prof.step()
with tempfile.TemporaryDirectory() as tmp:
    prof.export_chrome_trace(f"{tmp}/t.json")
    with open(f"{tmp}/t.json", "rb") as src, gzip.open(out, "wb") as dst: shutil.copyfileobj(src, dst)
print(out, out.stat().st_size, "bytes; torch", torch.__version__)
