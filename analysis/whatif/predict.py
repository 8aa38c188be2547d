"""One prediction: a configuration's step as a sum of terms, each with the figures it rests on.

predict() decides, term by term, which figure goes into the pure rules of terms.py: measured in
the input run where it can be, calibrated (run.json `calibration`) where the input run cannot
show it, and otherwise an assumption that says so ("assumed: ..."). Predicting a GPU from a CPU
profile uses FLOPs and bytes against a datasheet and is labelled "analytic".
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis.datasheet import DEFAULT_GPU, GpuSpec, find_gpu
from analysis.run.costmodel import strategy_traffic
from analysis.whatif import terms as T
from analysis.whatif.link import choose_link, host_link
from analysis.whatif.loading import data_term
from analysis.whatif.prediction import Prediction, Target, Term, energy_per_million_images, scaled
from analysis.whatif.ranks import ranks_terms
from analysis.whatif.profile import Profile, WhatIfError
from profiler.contract import vocab
from profiler.contract.runjson import Calibration, ModelInfo, ThreadScaling

COMPUTE_EFFICIENCY = 0.4        # share of the datasheet FLOP peak a small-image convnet reaches (stated)
MEMORY_EFFICIENCY = 0.7         # share of the datasheet memory bandwidth Adam's passes reach (stated)
ASSUMED_GLOO_GBPS = 1.0         # ring bytes/s of a loopback gloo all-reduce when run.json has no calibration
DP_CALL_MS_PER_REPLICA = 0.5    # host work of one DataParallel call per replica: threads, scatter/gather glue (assumed)
ANALYTIC = "analytic"
ASSUMED = "assumed"


def _factor_basis(tf: T.ThreadFactor, p: Profile, threads: int, processes: int, kind: str) -> str:
    if tf.source == "assumed":
        return (f"× {tf.factor:.2f} for {threads} thread(s) per process vs {p.threads} (assumed: linear in cores, "
                "no calibration in run.json)")
    return (f"× {tf.factor:.2f}: calibrated {kind} at {threads} thread(s) {tf.at_target_ms:.1f} ms ({tf.how}) vs "
            f"{tf.at_base_ms:.1f} ms at {p.threads} (run.json calibration"
            + (", processes measured alone" if processes > 1 else "") + ")")


def _flops(p: Profile) -> int:
    m = p.model
    f = (m.forward_flops if m is not None else None) or (sum(la.flops for la in m.layers) if m and m.layers else 0)
    if not f:
        raise WhatIfError(f"{p.run_dir}: run.json has no forward FLOPs (layer table): cannot predict a GPU from this "
                          "CPU profile")
    return f


def target_gpu(p: Profile, t: Target) -> tuple[GpuSpec | None, list[str]]:
    """The card the target runs on: --gpu, else the input run's own (when the table knows it), else the default."""
    if t.device_type != vocab.CUDA:
        return None, []
    if t.gpu is not None:
        return t.gpu, []
    own = find_gpu(p.gpu_name)
    if p.device_type == vocab.CUDA:
        return own, ([] if own or not p.gpu_name else [f"{p.gpu_name} is not in the GPU table: memory fit not checked"])
    spec = find_gpu(DEFAULT_GPU)
    return spec, [f"--gpu not given: predicted for {DEFAULT_GPU} (the default)"]


@dataclass
class _Context:
    """What every term of one prediction needs: derived once from the profile and the target."""

    spec: GpuSpec | None
    notes: list[str]
    analytic: bool                   # a GPU predicted from a CPU profile, or a datasheet figure used
    own: GpuSpec | None
    same_cards: bool
    procs: int
    b: int
    n: int
    threads: int
    loss_images: int
    calib: Calibration | None
    curve: ThreadScaling | None
    model: ModelInfo | None
    pbytes: int | None

    @classmethod
    def of(cls, p: Profile, t: Target) -> _Context:
        spec, notes = target_gpu(p, t)
        own = find_gpu(p.gpu_name) if p.device_type == vocab.CUDA else None
        b = t.per_device_batch
        calib = p.calibration
        model = p.model
        return cls(spec=spec, notes=notes, analytic=p.device_type == vocab.CPU and t.device_type == vocab.CUDA, own=own,
                   same_cards=p.device_type == vocab.CUDA and (t.gpu is None or own == t.gpu), procs=t.processes, b=b,
                   n=t.devices, threads=T.threads_per_process(t.cpus, t.processes) if t.device_type == vocab.CPU else 1,
                   loss_images=t.global_batch if t.strategy in vocab.DP_STRATEGIES else b, calib=calib,
                   curve=calib.thread_scaling if calib is not None else None, model=model,
                   pbytes=model.parameter_bytes if model is not None else None)


def predict(p: Profile, t: Target) -> Prediction:
    """The step of configuration t, scaled from the input profile p, term by term."""
    if p.device_type == vocab.CUDA and t.device_type == vocab.CPU:
        raise WhatIfError(f"{p.run_dir}: predicting a CPU run from a GPU profile is not modelled")
    c = _Context.of(p, t)
    spec, notes, pbytes, threads, n = c.spec, c.notes, c.pbytes, c.threads, c.n
    out: list[Term] = []
    ranks_measured = _compute_terms(p, t, c, out)
    nbytes = _communication_terms(p, t, c, out, ranks_measured)
    _copy_terms(p, t, c, out)

    # --- data loading: the loader's CPU against the cores its workers get
    rest = sum(x.ms for x in out)
    # the calibrated ranks' loaders served a tensor already in memory: the input run's loading was not in them
    out.append(data_term(p, t, threads, rest, not c.analytic and p.device_type == t.device_type and not ranks_measured))

    step = sum(x.ms for x in out)
    ips = t.global_batch / (step / 1e3)
    mem, fits = _memory(p, t, c)
    if not pbytes:
        notes.append("no parameter_bytes in run.json: memory per device and communication not predicted")
    loader = p.loader_ms_per_image
    pred = Prediction(
        input_run=p.name, target=t, terms=out, step_ms=step, images_per_s=ips, speedup=ips / p.images_per_s,
        images_per_device_hour=ips * 3600 / n, bytes_per_step=nbytes, memory_per_device=mem, memory_fits=fits,
        gpu=spec.name if spec is not None else None, analytic=c.analytic,
        assumed=any(ASSUMED in x.basis for x in out), notes=notes,
        loader_cores_needed=T.loader_cores_needed(loader, ips) if loader is not None else None)
    if t.device_type == vocab.CUDA and spec is not None and spec.tdp_w:
        pred.tdp_w = spec.tdp_w
        pred.kwh_per_million_images = energy_per_million_images(spec.tdp_w, n, step, pred.busy_share, t.global_batch)
    return pred


def _layers_basis(times: list[T.LayerTime], spec: GpuSpec, images: int, passes: int) -> str:
    by = {}
    for x in times:
        by.setdefault(x.precision, []).append(x)
    parts = [f"{len(v)} layer(s) in {k} ({spec.peak_tflops(k):g} TFLOPS)" for k, v in sorted(by.items())]
    bound = [x.name for x in times if x.memory_bound]
    return (f"{ANALYTIC}: per layer of the layer table, {'2 × ' if passes == 2 else ''}max(FLOPs × {images} images "
            f"÷ ({spec.name} peak of its precision × {COMPUTE_EFFICIENCY:.0%}), bytes ÷ ({spec.memory_gbps:g} GB/s × "
            f"{MEMORY_EFFICIENCY:.0%})), efficiencies stated: " + ", ".join(parts)
            + " (cuDNN convolutions in TF32 by default on Ampere+, matmuls fp32 unless allow_tf32 or AMP)"
            + (f"; memory-bound: {', '.join(bound)}" if bound else "; none memory-bound"))


def _compute_terms(p: Profile, t: Target, c: _Context, out: list[Term]) -> bool:
    """Forward, backward, loss and optimizer; True when CPU DDP's terms came from the calibrated ranks
    (the all-reduce included)."""
    spec, model, pbytes, notes, procs, threads, calib, curve, own, b = (
        c.spec, c.model, c.pbytes, c.notes, c.procs, c.threads, c.calib, c.curve, c.own, c.b)
    if c.analytic:
        assert spec is not None
        layers = model.layers if model is not None and model.layers else None
        if layers:
            for name, passes in (("forward", 1), ("backward", 2)):
                times = [T.layer_time(la, b, spec, p.amp, passes, COMPUTE_EFFICIENCY, MEMORY_EFFICIENCY)
                         for la in layers]
                out.append(Term(name, vocab.COMPUTE, sum(x.ms for x in times), _layers_basis(times, spec, b, passes)))
        else:
            f = _flops(p)
            peak = spec.fp16_tflops if p.amp else spec.fp32_tflops
            eff = f"÷ ({spec.name} {peak:g} TFLOPS {'fp16' if p.amp else 'fp32'} datasheet × {COMPUTE_EFFICIENCY:.0%} " \
                  f"efficiency, stated)"
            out.append(Term("forward", vocab.COMPUTE, T.flops_ms(f * b, peak, COMPUTE_EFFICIENCY),
                            f"{ANALYTIC}: {f / 1e9:.2f} GFLOP per image (model.forward_flops, no layer table) × {b} "
                            f"images {eff}"))
            out.append(Term("backward", vocab.COMPUTE, T.flops_ms(2 * f * b, peak, COMPUTE_EFFICIENCY),
                            f"{ANALYTIC}: 2 × forward FLOPs × {b} images {eff}"))
        params = (model.parameters if model is not None and model.parameters else (pbytes or 0) // 4)
        if not params:
            raise WhatIfError(f"{p.run_dir}: run.json has no parameter count: cannot predict the optimizer on a GPU")
        out.append(Term("optimizer", vocab.COMPUTE,
                        T.transfer_ms(T.adam_bytes(params), spec.memory_gbps * MEMORY_EFFICIENCY),
                        f"{ANALYTIC}: Adam moves {T.ADAM_BYTES_PER_PARAMETER} bytes × {params / 1e6:.1f} M parameters "
                        f"÷ ({spec.memory_gbps:g} GB/s datasheet × {MEMORY_EFFICIENCY:.0%}, stated); not divided by N"))
    elif (t.device_type == vocab.CPU and t.strategy == vocab.DDP and procs > 1 and calib is not None
            and calib.alone_step is not None and calib.alone_step.threads == p.threads
            and T.contention_applies(calib.ddp_step, procs, threads, t.cpus == p.cpus)):
        ranks_terms(p, t, calib, pbytes, out, notes)
        return True
    else:
        if t.device_type == vocab.CPU:
            cf = T.thread_factor(curve, False, p.threads, threads)
            mf = T.thread_factor(curve, True, p.threads, threads)
            c_basis, m_basis = (_factor_basis(cf, p, threads, procs, "compute"),
                                _factor_basis(mf, p, threads, procs, "memory pass"))
            c_factor, m_factor = cf.factor, mf.factor
        elif spec is not None and own is not None and spec != own:
            c_factor = (own.fp16_tflops / spec.fp16_tflops) if p.amp else own.fp32_tflops / spec.fp32_tflops
            m_factor = own.memory_gbps / spec.memory_gbps
            c_basis = f"× {c_factor:.2f}: {own.name} → {spec.name} datasheet FLOP peak ({ANALYTIC})"
            m_basis = f"× {m_factor:.2f}: {own.name} → {spec.name} datasheet memory bandwidth ({ANALYTIC})"
            c.analytic = True
        else:
            c_factor = m_factor = 1.0
            c_basis, m_basis = "same device", "same device"
        for name, ms, images_from, images_to in (("forward", p.forward_ms, p.per_device_batch, b),
                                                 ("backward", p.backward_ms, p.per_device_batch, b),
                                                 ("loss", p.loss_ms, p.loss_images, c.loss_images)):
            out.append(Term(name, vocab.COMPUTE, scaled(ms, images_from, images_to, c_factor),
                            f"{ms:.1f} ms measured in {p.name} for {images_from} images, × {images_to}/{images_from} "
                            f"images; {c_basis}"))
        out.append(Term("optimizer", vocab.COMPUTE, p.optimizer_ms * m_factor,
                        f"{p.optimizer_ms:.1f} ms measured in {p.name}, not divided by N ("
                        + ("every rank updates every parameter" if t.strategy == vocab.DDP else "one optimizer")
                        + f"); {m_basis}"))
    return False


def _communication_terms(p: Profile, t: Target, c: _Context, out: list[Term], ranks_measured: bool) -> int:
    """What the strategy moves between devices per step, at the link it gets; returns the bytes per step."""
    spec, model, pbytes, notes, procs, threads, n, same_cards = (
        c.spec, c.model, c.pbytes, c.notes, c.procs, c.threads, c.n, c.same_cards)
    backward_ms = next(x.ms for x in out if x.name == "backward")
    items, missing = strategy_traffic(t.strategy, n, t.global_batch, model, p.amp)
    notes += missing
    nbytes = sum(i.bytes for i in items)
    if n > 1 and t.strategy == vocab.DDP and pbytes and not ranks_measured:
        ring = T.ring_allreduce_bytes(pbytes, n)
        if t.device_type == vocab.CPU:
            ar = p.calibration.allreduce if p.calibration is not None else None
            if ar is not None and ar.bytes > 0:
                ar_ms = T.rate_scaled_ms(ar.ms, ar.bytes, ar.processes, pbytes, n)
                ar_basis = (f"{ar.backend} all-reduce {ar.ms:.1f} ms for {ar.bytes / 1e6:.1f} MB between "
                            f"{ar.processes} processes (run.json calibration), scaled linearly to "
                            f"{pbytes / 1e6:.1f} MB of gradients at {n}")
            else:
                ar_ms = T.transfer_ms(ring, ASSUMED_GLOO_GBPS)
                ar_basis = (f"ring 2(N−1)/N × {pbytes / 1e6:.1f} MB = {ring / 1e6:.1f} MB at {ASSUMED_GLOO_GBPS:g} GB/s "
                            f"({ASSUMED}: no calibration in run.json)")
        else:
            link = choose_link(t.link_gbps, p.bandwidths, p.name, p.gpus, spec, same_cards, n)
            if link is None:
                raise WhatIfError(f"{p.run_dir}: no link bandwidth for the all-reduce: pass --link-gbps or --gpu")
            ar_ms = T.transfer_ms(ring, link.gbps)
            ar_basis = f"ring 2(N−1)/N × {pbytes / 1e6:.1f} MB = {ring / 1e6:.1f} MB at {link.basis}"
            c.analytic = c.analytic or link.source == "datasheet"
        if t.device_type == vocab.CPU and procs * threads >= t.cpus:
            exposed = ar_ms
            ov = (f"adds in full: {procs} processes × {threads} thread(s) fill the {t.cpus:g} cores, so gloo's own CPU "
                  "work competes with backward and overlap buys little")
        elif model is not None and model.layers:
            sched = T.ddp_schedule(model.layers, backward_ms, ar_ms)
            exposed = T.exposed_after_backward(sched, backward_ms)
            ov = (f"{len(sched)} buckets (25 MiB, first 1 MiB, reverse layer order) overlap backward "
                  f"({backward_ms:.1f} ms, split by layer FLOPs): {exposed:.1f} ms left after it")
        else:
            exposed, ov = ar_ms, "adds in full: no layer table to place the buckets"
        out.append(Term("all-reduce (exposed)", vocab.COMMUNICATION, exposed,
                        f"{ar_ms:.1f} ms in flight: {ar_basis}; {ov}"))
    elif n > 1 and t.strategy in vocab.DP_STRATEGIES:
        link = choose_link(t.link_gbps, p.bandwidths, p.name, p.gpus, spec, same_cards, n)
        if link is None:
            raise WhatIfError(f"{p.run_dir}: no link bandwidth for DataParallel's copies: pass --link-gbps or --gpu")
        c.analytic = c.analytic or link.source == "datasheet"
        for item in items:
            out.append(Term(item.kind.replace("_", " "), vocab.COMMUNICATION, T.transfer_ms(item.bytes, link.gbps),
                            f"{item.bytes / 1e6:.1f} MB (analysis.run.costmodel, layer table) at {link.basis}"))
        if model is not None and model.layers:
            last = model.layers[-1]
            g = last.output_elements * last.dtype_bytes * t.global_batch * (n - 1) // n
            nbytes += g
            out.append(Term("gather outputs", vocab.COMMUNICATION, T.transfer_ms(g, link.gbps),
                            f"{g / 1e6:.3f} MB: the last layer's output × {t.global_batch} × (N−1)/N at {link.gbps:.1f} GB/s"))
        calls = len(model.layers) if t.strategy == vocab.DP_LAYERWISE and model and model.layers else 1
        if not (p.strategy == t.strategy and p.devices == n):
            out.append(Term("replica threads", vocab.HOST_OVERHEAD, calls * n * DP_CALL_MS_PER_REPLICA,
                            f"{calls} DataParallel call(s) × {n} replicas × {DP_CALL_MS_PER_REPLICA} ms ({ASSUMED}: "
                            "thread start, scatter/gather glue; no DataParallel run measured)"))
    return nbytes


def _copy_terms(p: Profile, t: Target, c: _Context, out: list[Term]) -> None:
    """The input batch's host → device copy, and the rest of the measured step kept per step."""
    spec, model, b = c.spec, c.model, c.b
    if t.device_type == vocab.CUDA:
        h2d_images = t.global_batch if t.strategy in vocab.DP_STRATEGIES else b
        if p.device_type == vocab.CUDA and c.same_cards:
            src_images = p.global_batch if p.strategy in vocab.DP_STRATEGIES else p.per_device_batch
            out.append(Term("input copy", vocab.H2D_COPY, scaled(p.h2d_ms, src_images, h2d_images),
                            f"ss:h2d {p.h2d_ms:.1f} ms measured in {p.name} for {src_images} images × "
                            f"{h2d_images}/{src_images}"))
        elif model is not None and model.layers:
            hl = host_link(p.gpus, spec, p.bandwidths, p.name, c.same_cards)
            first = model.layers[0]
            ib = first.input_elements * first.dtype_bytes * h2d_images
            if hl is not None and hl.gbps > 0:
                out.append(Term("input copy", vocab.H2D_COPY, T.transfer_ms(ib, hl.gbps),
                                f"{ANALYTIC}: {ib / 1e6:.1f} MB input at {hl.basis}"))
    out.append(Term("host", vocab.HOST_OVERHEAD, p.host_ms,
                    f"the rest of {p.name}'s step outside the phases, {p.host_ms:.1f} ms measured, kept per step"))


def _memory(p: Profile, t: Target, c: _Context) -> tuple[dict[str, int], bool | None]:
    """Bytes per device by part, and whether they fit the target card (None: no card or no parameters)."""
    spec, model, pbytes, notes, n, b = c.spec, c.model, c.pbytes, c.notes, c.n, c.b
    mem = T.memory_parts(pbytes or 0, model.layers if model else None, b, True, t.strategy == vocab.DDP and n > 1,
                         p.amp)
    if t.strategy in vocab.DP_STRATEGIES and n > 1 and model is not None and model.layers:
        first, last = model.layers[0], model.layers[-1]
        mem["dp_gathered"] = (first.input_elements + last.output_elements) * first.dtype_bytes * t.global_batch
    fits = sum(mem.values()) <= spec.memory_gb * 1e9 if spec is not None and pbytes else None
    if fits is False:
        notes.append(f"needs {sum(mem.values()) / 1e9:.1f} GB per device: does not fit in {spec.name}'s "
                     f"{spec.memory_gb:g} GB")
    return mem, fits
