"""How the what-if reads: the table, the basis, the check and the advice as text, and the same as JSON.

Kept apart from the figures (predict.py, check.py, advice.py) so the wording can change without
touching a number, and the JSON carries the numbers, never a sentence to parse.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis.text.tables import text_table
from analysis.whatif.advice import Advice
from analysis.whatif.check import CheckRow, error_summary
from analysis.whatif.predict import Prediction
from analysis.whatif.profile import Profile
from profiler.contract import vocab

SHORT = {vocab.COMPUTE: "comp", vocab.COMMUNICATION: "comm", vocab.H2D_COPY: "h2d", vocab.DATA_LOADING: "data",
         vocab.HOST_OVERHEAD: "host"}
PRED_HEADER = ["strategy", "devices", "batch", "per device", "step ms", "img/s", "speedup", "img/device-h",
               *[f"{s} ms" for s in SHORT.values()], "GB/step", "GB/device", "flags"]
ADVISED_HEADER = ["strategy", "devices", "batch", "CPUs", "workers", "step ms", "img/s", "→ CPUs", "workers",
                  "step ms", "img/s", "img/device-h"]
CHECK_HEADER = ["run", "strategy", "devices", "batch", "predicted from", "predicted ms", "measured ms", "error"]
CHECK_FOOT = ("predicted: python -m analysis.whatif from the 1-device run, term by term (its basis there); "
              "error = (predicted − measured) ÷ measured")


def config_label(p: Prediction) -> str:
    t = p.target
    unit = p.gpu or "gpu" if t.device_type == vocab.CUDA else vocab.CPU
    return f"{t.strategy} × {t.devices} {unit}, batch {t.global_batch}"


def flags(p: Prediction) -> str:
    out = [f for f, on in (("analytic", p.analytic), ("assumed", p.assumed), ("does not fit", p.memory_fits is False))
           if on]
    return ", ".join(out) or "measured"


def prediction_row(p: Prediction) -> list[str]:
    t, parts = p.target, p.parts_ms
    unit = "gpu" if t.device_type == vocab.CUDA else vocab.CPU
    return [t.strategy, f"{t.devices} {unit}", str(t.global_batch), str(t.per_device_batch), f"{p.step_ms:.1f}",
            f"{p.images_per_s:.1f}", f"{p.speedup:.2f}×", f"{p.images_per_device_hour:,.0f}",
            *[f"{parts[c]:.1f}" for c in SHORT], f"{p.bytes_per_step / 1e9:.3f}", f"{p.memory_bytes / 1e9:.2f}",
            flags(p)]


def starved(pairs: Sequence[tuple[Prediction, Prediction]]) -> list[tuple[Prediction, Prediction]]:
    """The pairs whose asked allocation starves the loader: the advised CPUs make the step shorter."""
    return [(a, b) for a, b in pairs if b.step_ms * 1.001 < a.step_ms]


def advised_row(asked: Prediction, advised: Prediction) -> list[str]:
    t, u = asked.target, advised.target
    unit = "gpu" if t.device_type == vocab.CUDA else vocab.CPU
    return [t.strategy, f"{t.devices} {unit}", str(t.global_batch), f"{t.cpus:g}", str(t.workers),
            f"{asked.step_ms:.1f}", f"{asked.images_per_s:.1f}", f"{u.cpus:g}", str(u.workers), f"{advised.step_ms:.1f}",
            f"{advised.images_per_s:.1f}", f"{advised.images_per_device_hour:,.0f}"]


def check_row(r: CheckRow) -> list[str]:
    unit = "gpu" if r.device_type == vocab.CUDA else vocab.CPU
    return [r.run, r.strategy, f"{r.devices} {unit}", str(r.global_batch), r.predicted_from, f"{r.predicted_ms:.1f}",
            f"{r.measured_ms:.1f}", f"{r.error * 100:+.1f} %"]


def check_summary(rows: Sequence[CheckRow]) -> str:
    s = error_summary(list(rows))
    if not s["configurations"]:
        return ""
    return (f"{s['configurations']} measured configuration(s): median |error| {s['median_abs_error'] * 100:.1f} %, "
            f"worst {s['worst_abs_error'] * 100:.1f} %")


def profile_line(p: Profile) -> str:
    unit = "gpu" if p.device_type == vocab.CUDA else vocab.CPU
    return (f"What if, from {p.name} ({p.strategy}, {p.devices} {unit}, batch {p.global_batch}"
            + (f", {p.gpu_name}" if p.gpu_name else "") + f", {p.threads} thread(s) per process, "
            + (f"{p.cpus:g} CPUs, " if p.cpus_known else "CPUs not recorded, ")
            + f"{p.workers} worker(s)): measured step {p.step_ms:.1f} ms, {p.images_per_s:.1f} images/s")


def energy_line(p: Prediction) -> str | None:
    """kWh per million images at TDP × predicted busy share (stated), or None without a GPU's TDP."""
    if p.kwh_per_million_images is None or p.tdp_w is None:
        return None
    return (f"energy: {p.kwh_per_million_images:.3g} kWh per million images at TDP × predicted busy share (stated): "
            f"{p.gpu} {p.tdp_w:g} W × {p.target.devices} × {p.step_ms:.1f} ms × {p.busy_share:.0%} busy ÷ "
            f"{p.target.global_batch} images")


def advice_text(advice: Sequence[Advice]) -> list[str]:
    if not advice:
        return ["(no GPU configuration predicted: pass --gpu NAME or --device-type cuda for request lines)"]
    out: list[str] = []
    for a in advice:
        p = a.prediction
        kwh = ("" if p.kwh_per_million_images is None else
               f"; {p.kwh_per_million_images:.3g} kWh per million images at TDP × predicted busy share (stated)")
        out += [f"{a.label}: {config_label(p)}: {p.images_per_s:.1f} images/s, {p.images_per_device_hour:,.0f} images "
                f"per GPU-hour ({1e6 / p.images_per_device_hour:.2f} GPU-hours per million images{kwh})"]
        out += [f"    {line}" for line in a.lines]
    if len(advice) == 2:
        cheap, fast = advice[0].prediction, advice[1].prediction
        extra = 1e6 / fast.images_per_device_hour - 1e6 / cheap.images_per_device_hour
        out.append(f"the fastest is {fast.images_per_s / cheap.images_per_s:.2f}× the rate of the cheapest and costs "
                   f"{extra:+.2f} GPU-hours per million images")
    out.append("request_memory: the input run's peak RSS per training process × processes + 25 %; "
               "gpus_minimum_memory: the predicted memory per device + 20 %; request_cpus: one per training process + "
               "the fewest DataLoader cores past which data loading stops binding, WORKERS raised to use them -- "
               "the rates above are predicted at exactly that request")
    return out


def render_text(profiles: Sequence[tuple[Profile, list[Prediction]]], checks: Sequence[CheckRow],
                advice: Sequence[Advice], notes: Sequence[str] = (),
                pairs: Sequence[tuple[Prediction, Prediction]] = ()) -> str:
    out: list[str] = []
    for prof, preds in profiles:
        if out:
            out.append("")
        out += [profile_line(prof), ""]
        out.append(text_table(PRED_HEADER, [prediction_row(p) for p in preds], left=1))
        out.append("ms per step by breakdown category; speedup: images/s vs the input run's measured; GB/device: "
                   "parameters + gradients + Adam state (+ DDP buckets) + the layer table's activations (a floor)")
        for p in preds:
            out += ["", f"{config_label(p)}: {p.step_ms:.1f} ms"]
            out += [f"  - {t.name} {t.ms:.1f} ms: {t.basis}" for t in p.terms]
            out += [f"  - note: {n}" for n in p.notes]
            if (line := energy_line(p)) is not None:
                out.append(f"  - {line}")
    short = starved(pairs)
    if short:
        out += ["", "As asked, and with the advised CPUs (the asked allocation starves the DataLoader):",
                text_table(ADVISED_HEADER, [advised_row(a, b) for a, b in short], left=1)]
    if checks:
        out += ["", "What if vs measured:", text_table(CHECK_HEADER, [check_row(r) for r in checks], left=2),
                check_summary(checks)]
    out += ["", "Cluster advice:"] + advice_text(advice)
    if notes:
        out += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(out)


# --- JSON -----------------------------------------------------------------------------------

def prediction_dict(p: Prediction) -> dict[str, Any]:
    t = p.target
    return {
        "input_run": p.input_run, "strategy": t.strategy, "devices": t.devices, "device_type": t.device_type,
        "global_batch": t.global_batch, "per_device_batch": t.per_device_batch, "cpus": t.cpus, "workers": t.workers,
        "gpu": p.gpu, "step_ms": p.step_ms, "parts_ms": p.parts_ms, "images_per_s": p.images_per_s,
        "speedup": p.speedup, "images_per_device_hour": p.images_per_device_hour, "bytes_per_step": p.bytes_per_step,
        "memory_per_device": dict(p.memory_per_device), "memory_per_device_bytes": p.memory_bytes,
        "memory_fits": p.memory_fits, "analytic": p.analytic, "assumed": p.assumed,
        "loader_cores_needed": p.loader_cores_needed,
        "kwh_per_million_images": p.kwh_per_million_images, "tdp_w": p.tdp_w, "busy_share": p.busy_share,
        "terms": [{"name": x.name, "category": x.category, "ms": x.ms, "basis": x.basis} for x in p.terms],
        "basis": p.basis, "notes": list(p.notes)}


def check_dict(r: CheckRow) -> dict[str, Any]:
    return {"run": r.run, "strategy": r.strategy, "devices": r.devices, "device_type": r.device_type,
            "global_batch": r.global_batch, "predicted_from": r.predicted_from, "predicted_ms": r.predicted_ms,
            "measured_ms": r.measured_ms, "error": r.error, "analytic": r.analytic, "assumed": r.assumed}


def advice_dict(a: Advice) -> dict[str, Any]:
    p = a.prediction
    return {"label": a.label, "configuration": p.target.strategy, "devices": a.request_gpus,
            "step_ms": p.step_ms, "images_per_s": p.images_per_s, "images_per_device_hour": p.images_per_device_hour,
            "global_batch": a.prediction.target.global_batch, "request_gpus": a.request_gpus,
            "request_cpus": a.request_cpus, "request_memory_gb": a.request_memory_gb,
            "gpus_minimum_memory_gb": a.gpus_minimum_memory_gb, "workers": a.workers, "lines": list(a.lines),
            "kwh_per_million_images": a.prediction.kwh_per_million_images}


def to_json(profiles: Sequence[tuple[Profile, list[Prediction]]], checks: Sequence[CheckRow],
            advice: Sequence[Advice], notes: Sequence[str] = (),
            pairs: Sequence[tuple[Prediction, Prediction]] = ()) -> dict[str, Any]:
    return {"input_runs": [p.name for p, _ in profiles],
            "predictions": [prediction_dict(x) for _, preds in profiles for x in preds],
            "advised": [prediction_dict(b) for _, b in starved(pairs)],
            "checks": [check_dict(r) for r in checks], "check_summary": error_summary(list(checks)),
            "advice": [advice_dict(a) for a in advice], "notes": list(notes)}
