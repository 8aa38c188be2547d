"""The data term: the step's wait on its DataLoader, from the loader's measured CPU cost per image
against the cores the target's workers get (starved, overlapped, or in series with the step)."""
from __future__ import annotations

from analysis.whatif import terms as T
from analysis.whatif.prediction import Target, Term, scaled
from analysis.whatif.profile import Profile
from profiler.contract import vocab

__all__ = ["data_term"]


def data_term(p: Profile, t: Target, threads: int, rest_ms: float, measured_compute: bool) -> Term:
    """The wait on data: starvation when the workers' cores cannot load a batch in a step, else the fetch itself.

    Loading that shared the input run's cores is already inside its measured phases; only what
    the target's cores change is added (measured_compute: the compute terms were scaled from it)."""
    def busy(device_type: str, processes: int, th: int) -> float:
        return float(processes * (th if device_type == vocab.CPU else 1))

    per_process = t.per_device_batch if t.strategy == vocab.DDP else t.global_batch
    base_per_process = p.per_device_batch if p.strategy == vocab.DDP else p.global_batch
    cost = p.loader_ms_per_image
    if cost is None:
        ms = scaled(p.data_wait_ms, base_per_process, per_process)
        return Term("data", vocab.DATA_LOADING, ms, f"ss:data_wait {p.data_wait_ms:.1f} ms measured in {p.name} × "
                    f"{per_process}/{base_per_process} images ({p.loader_basis}: starvation not predicted)")
    base_cores = T.loader_cores(p.cpus, busy(p.device_type, p.processes, p.threads), p.processes, p.workers)
    base_wait = T.loader_wait_ms(cost, p.global_batch, base_cores, p.step_ms - p.data_wait_ms)
    in_fetch = base_wait if base_cores.why != "shared" else 0.0     # shared: inside the compute, not ss:data_wait
    fetch = scaled(max(0.0, p.data_wait_ms - in_fetch), base_per_process, per_process)
    cores = T.loader_cores(t.cpus, busy(t.device_type, t.processes, threads), t.processes, t.workers)
    wait = T.loader_wait_ms(cost, t.global_batch, cores, rest_ms)
    already = (cost * t.global_batch / base_cores.cores
               if measured_compute and base_cores.why == "shared" and cores.why == "shared" else 0.0)
    load_ms = cost * t.global_batch / cores.cores
    where = {"free": f"{cores.cores:g} free core(s) for {t.processes * t.workers} worker(s): runs beside the step",
             "shared": f"no free core ({t.cpus:g} CPUs, {t.processes} process(es)"
                       + (f" × {threads} threads" if t.device_type == vocab.CPU else "")
                       + f"): the {t.workers} worker(s) share the step's cores, so loading adds in full",
             "main": "workers=0: the training process loads, in series with the step"}[cores.why]
    starve = (f"starved: {load_ms:.1f} ms to load a batch vs {rest_ms:.1f} ms of step" if cores.overlapped and wait > 0
              else f"{load_ms:.1f} ms to load a batch")
    if already:
        starve += f", {already:.1f} ms of it already inside {p.name}'s measured phases (its loader shared the cores too)"
    return Term("data", vocab.DATA_LOADING, max(wait - already, fetch),
                f"{p.loader_basis}; × {t.global_batch} images ÷ {cores.cores:g} core(s) ({where}); {starve}; "
                f"fetch {fetch:.1f} ms (ss:data_wait measured in {p.name} × {per_process}/{base_per_process} images)")
