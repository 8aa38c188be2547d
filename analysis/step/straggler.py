"""Which rank the others wait for: each collective matched across ranks, its time split into waiting and transfer.

A rank's all-reduce lasts from when *it* arrives until the last rank has arrived and the data has
moved; all ranks leave it at about the same moment. So for the k-th collective of a step, the rank
with the shortest span arrived last -- its span is the transfer -- and every other rank's excess over
that span is time spent waiting for it. This needs no common clock between the ranks' traces (a
multi-node job's hosts are never exactly in step). Matching is by order within each step: the
k-th collective of step N on every rank (a step whose ranks saw different counts is skipped, and
said). The straggler is the rank that arrives last most often; what it did instead is its own
breakdown. Pure functions; torch-free.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from analysis.step.classify import GLOO_SPAN, KERNEL_CATS, NCCL_KERNEL, category_mask, name_mask
from analysis.trace.reader import Trace
from analysis.records import Collective
from profiler.contract import vocab

__all__ = ["Collective", "collectives", "RankSkew", "StragglerFigures", "straggler"]



def collectives(tr: Trace, steps: Sequence[tuple[int, float, float]]) -> list[Collective]:
    """The trace's collectives inside its step windows [(number, start_us, end_us)] (trace-relative µs),
    in start order; NCCL kernels when the trace has any, else gloo's host spans."""
    if not steps:
        return []
    nccl = name_mask(tr, NCCL_KERNEL) & category_mask(tr, KERNEL_CATS)
    pick = nccl if nccl.any() else name_mask(tr, GLOO_SPAN)
    idx = np.flatnonzero(pick)
    idx = idx[np.argsort(tr.ts[idx], kind="stable")]
    starts = np.array([s for _, s, _ in steps])
    ends = np.array([e for _, _, e in steps])
    out: list[Collective] = []
    for i in idx:
        k = int(np.searchsorted(starts, tr.ts[i], side="right")) - 1
        if k >= 0 and tr.ts[i] < ends[k]:
            out.append(Collective(steps[k][0], tr.names[tr.name[i]], float(tr.dur[i])))
    return out


@dataclass(frozen=True)
class RankSkew:
    """One rank over the matched steps: its own step, its collectives, and the part of them spent waiting."""

    rank: str
    step_ms: float
    comm_ms: float          # Σ its collectives' spans per step
    wait_ms: float          # of which waiting for a later rank
    last_share: float       # share of the matched collectives at which it arrived last


@dataclass(frozen=True)
class StragglerFigures:
    ranks: list[RankSkew]
    matched: int                      # collectives matched on every rank
    steps: int                        # steps with matched collectives
    skipped_steps: list[int]          # steps whose ranks saw different collective counts
    straggler: str | None             # the rank arriving last most often (None: no clear one)
    transfer_ms: float                # per step: the last arrival's own spans
    skew_ms: float                    # per step: max - min of the ranks' mean step walls
    doing: dict[str, float] = field(default_factory=dict)   # the straggler's breakdown shares, its largest first


def straggler(per_rank: dict[str, list[Collective]], step_walls_ms: dict[str, dict[int, float]],
              shares: dict[str, dict[str, float]], clear: float = 0.6, lopsided: float = 0.5) -> StragglerFigures | None:
    """Ranks' matched collectives -> who waited for whom. A rank is named the straggler when it arrives
    last at >= `clear` of the collectives *and* waits itself at most `lopsided` x the others' mean wait
    (ranks that take turns being last -- jitter, or two ranks sharing cores -- wait alike, and none is
    named). None with fewer than 2 ranks or nothing matched."""
    ranks = sorted(per_rank)
    if len(ranks) < 2:
        return None
    by_step: dict[str, dict[int, list[Collective]]] = {r: {} for r in ranks}
    for r in ranks:
        for c in per_rank[r]:
            by_step[r].setdefault(c.step, []).append(c)
    common = sorted(set.intersection(*(set(by_step[r]) for r in ranks)))
    wait = {r: 0.0 for r in ranks}
    comm = {r: 0.0 for r in ranks}
    last = Counter[str]()
    transfer = 0.0
    matched, used, skipped = 0, [], []
    for s in common:
        lists = [by_step[r][s] for r in ranks]
        if len({len(x) for x in lists}) != 1:
            skipped.append(s)
            continue
        used.append(s)
        for k in range(len(lists[0])):
            durs = np.array([x[k].dur_us for x in lists])
            j = int(np.argmin(durs))
            last[ranks[j]] += 1
            transfer += float(durs[j])
            matched += 1
            for r, d in zip(ranks, durs):
                comm[r] += float(d)
                wait[r] += float(d - durs[j])
    if not matched:
        return None
    n = len(used)
    walls = {r: float(np.mean([step_walls_ms[r][s] for s in used if s in step_walls_ms.get(r, {})] or [0.0]))
             for r in ranks}
    rows = [RankSkew(r, walls[r], float(comm[r] / n / 1e3), float(wait[r] / n / 1e3), last[r] / matched) for r in ranks]
    top, count = last.most_common(1)[0]
    others_wait = [wait[r] for r in ranks if r != top]
    named = top if (count / matched >= clear and wait[top] <= lopsided * (sum(others_wait) / len(others_wait))) else None
    doing = dict(sorted(((c, v) for c, v in shares.get(named, {}).items() if c != vocab.COMMUNICATION),
                        key=lambda kv: -kv[1])) if named else {}
    return StragglerFigures(rows, matched, n, skipped, named, float(transfer / n / 1e3),
                            max(walls.values()) - min(walls.values()), {c: float(v) for c, v in doing.items()})
