"""CPU DDP ranks predicted from the calibration's own ranks (run.json `calibration`): each phase as those
ranks measured it, moved to the target's batch; the all-reduce is what their backward took beyond compute;
the wait at each step's end for the slowest rank as they waited."""
from __future__ import annotations

from analysis.whatif import terms as T
from analysis.whatif.prediction import Target, Term
from analysis.whatif.profile import Profile
from profiler.contract import vocab
from profiler.contract.runjson import Calibration

__all__ = ["ranks_terms"]


def ranks_terms(p: Profile, t: Target, calib: Calibration, pbytes: int | None, out: list[Term],
                 notes: list[str]) -> None:
    """CPU DDP ranks like the calibration's: each phase from its timing as those ranks, moved to the
    target's batch along the line through the calibrated step alone and the input run's phase; the
    all-reduce is what the ranks' backward took beyond its compute."""
    alone, ranks = calib.alone_step, calib.ddp_step
    assert alone is not None and ranks is not None
    c = T.ddp_contention(alone, ranks)
    b, bc = t.per_device_batch, alone.batch
    where = (f"the calibrated step (run.json) as {ranks.processes} DDP ranks × {ranks.threads} thread(s) on "
             f"{ranks.batch} images each, {ranks.workers} DataLoader worker(s) each")
    if ranks.workers != t.workers:
        notes.append(f"the calibrated ranks ran with {ranks.workers} DataLoader worker(s) each, the target has "
                     f"{t.workers}: what the workers cost the ranks' step is not re-measured")
    for name, cal_ms, ms in (("forward", alone.forward_ms, p.forward_ms + p.loss_ms),
                             ("backward", alone.backward_ms, p.backward_ms)):
        at_b = T.at_batch(bc, cal_ms, p.per_device_batch, ms, b)
        move = ("" if b == bc else
                f"; alone on {b} images {at_b:.1f} ms on the line through {cal_ms:.1f} ms at {bc} and {p.name}'s "
                f"{ms:.1f} ms at {p.per_device_batch}")
        out.append(Term(name, vocab.COMPUTE, at_b * c.compute,
                        f"× {c.compute:.2f} as {where}: forward {ranks.forward_ms:.1f} ms vs {alone.forward_ms:.1f} ms "
                        f"alone at {alone.threads} thread(s)"
                        + ("; backward's compute taken to slow as forward's" if name == "backward" else "")
                        + f"{move}"))
    out.append(Term("loss", vocab.COMPUTE, 0.0, f"inside forward here ({where}: forward + loss)"))
    out.append(Term("optimizer", vocab.COMPUTE, ranks.optimizer_ms,
                    f"{ranks.optimizer_ms:.1f} ms: Adam as {where}, every rank updating every parameter at once "
                    f"({alone.optimizer_ms:.1f} ms alone, {p.optimizer_ms:.1f} ms measured in {p.name})"))
    if pbytes:
        ar = calib.allreduce
        bare = (f"; a bare {ar.backend} all-reduce moved {ar.bytes / 1e6:.1f} MB in {ar.ms:.1f} ms"
                if ar is not None and ar.bytes > 0 else "")
        out.append(Term("all-reduce (exposed)", vocab.COMMUNICATION, c.allreduce_ms,
                        f"the calibrated rank's backward {ranks.backward_ms:.1f} ms − {alone.backward_ms:.1f} ms "
                        f"alone × {c.compute:.2f} = {c.allreduce_ms:.1f} ms per step: gloo's all-reduce of "
                        f"{pbytes / 1e6:.1f} MB of gradients on the cores backward also needs (run.json calibration)"
                        f"{bare}"))
    if ranks.wait_ms is not None:
        out.append(Term("wait for the slowest rank", vocab.COMMUNICATION, ranks.wait_ms,
                        f"{ranks.wait_ms:.1f} ms per step: the calibrated ranks' wait at each step's end for the "
                        f"slowest one (mean over the ranks); a step lasts as long as its slowest rank, and ranks "
                        f"sharing {t.cpus:g} cores finish their phases at different times (the loop's loss "
                        "all-reduce waits the same way)"))
    else:
        notes.append("the calibration predates the ranks' wait for the slowest one (run.json `wait_ms`): "
                     "not predicted; a step lasts as long as its slowest rank")
