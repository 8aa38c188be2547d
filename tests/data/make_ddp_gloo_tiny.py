"""Regenerate tests/data/ddp_gloo_rank{0,1}_tiny.pt.trace.json.gz: a real 2-process gloo DDP CPU trace.

Tiny CNN, 2 profiled steps, the runner's phase labels around each phase, 127.0.0.1 only.
Run from the repo root:  .venv/bin/python tests/data/make_ddp_gloo_tiny.py
"""
import os, shutil, tempfile, torch, torch.distributed as dist, torch.multiprocessing as mp
from torch import nn
from torch.profiler import profile, record_function, schedule, ProfilerActivity, tensorboard_trace_handler
from pathlib import Path
from profiler.contract import vocab
PORT = 29533
def run(rank, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(PORT)); torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    m = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8*14*14, 10)))
    opt = torch.optim.SGD(m.parameters(), 0.1)
    with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=1, warmup=1, active=2), on_trace_ready=tensorboard_trace_handler(out, worker_name=f"rank{rank}", use_gzip=True)) as p:
        for _ in range(4):
            x = torch.randn(8, 3, 16, 16); y = torch.randint(0, 10, (8,))
            with record_function(vocab.FORWARD): out = m(x)
            with record_function(vocab.LOSS): loss = nn.functional.cross_entropy(out, y)
            with record_function(vocab.BACKWARD): loss.backward()
            with record_function(vocab.OPTIMIZER): opt.step(); opt.zero_grad()
            p.step()
    dist.destroy_process_group()
if __name__ == "__main__":
    OUT = Path(tempfile.mkdtemp())
    mp.spawn(run, args=(str(OUT),), nprocs=2)
    for f in OUT.glob("rank*.pt.trace.json.gz"):
        dest = Path(__file__).with_name(f"ddp_gloo_{f.name.split('.')[0]}_tiny.pt.trace.json.gz")
        shutil.copy(f, dest); print(dest, dest.stat().st_size, "bytes; torch", torch.__version__)
    shutil.rmtree(OUT)
