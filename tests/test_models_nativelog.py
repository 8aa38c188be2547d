"""Kineto's known-harmless native lines leave the terminal for the run's log; everything else stays."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from models.nativelog import NativeLogFilter, is_harmless
from models.sweep import pump_stderr

# stderr of `python -m models.train --device cpu ...` on this CPU-only machine, byte for byte:
# tqdm redraws with \r and never ends its line, and Kineto writes into the middle of it
CAPTURED = ("\rsingle-1cpu-b8:   0%|          | 0/4 [00:00<?, ?step/s]"
            "USDT:2026-12-01 20:44:49 6844:6844 SyncActivityProfilerHandler.cpp:39] profiler_start\n"
            "\rsingle-1cpu-b8:   0%|          | 0/4 [00:00<?, ?step/s, img_s=66, loss=2.327]"
            "\rsingle-1cpu-b8:  25%|██▌       | 1/4 [00:00<00:00,  5.67step/s, img_s=247, loss=2.350]"
            "USDT:2026-12-01 20:44:49 6844:6844 SyncActivityProfilerHandler.cpp:46] profiler_stop\n"
            "ERROR:2026-12-01 20:44:49 6844:6844 DeviceProperties.cpp:56] gpuGetDeviceCount failed with code 35\n"
            "\rsingle-1cpu-b8:  50%|█████     | 2/4 [00:00<00:00,  7.11step/s, img_s=77, loss=2.388] "
            "\rsingle-1cpu-b8: 100%|██████████| 4/4 [00:00<00:00, 12.16step/s, img_s=295, loss=2.425]\n")
HARMLESS_LINES = [
    "USDT:2026-12-01 20:44:49 6844:6844 SyncActivityProfilerHandler.cpp:39] profiler_start\n",
    "USDT:2026-12-01 20:44:49 6844:6844 SyncActivityProfilerHandler.cpp:46] profiler_stop\n",
    "ERROR:2026-12-01 20:44:49 6844:6844 DeviceProperties.cpp:56] gpuGetDeviceCount failed with code 35\n",
]
BARS = ("\rsingle-1cpu-b8:   0%|          | 0/4 [00:00<?, ?step/s]"
        "\rsingle-1cpu-b8:   0%|          | 0/4 [00:00<?, ?step/s, img_s=66, loss=2.327]"
        "\rsingle-1cpu-b8:  25%|██▌       | 1/4 [00:00<00:00,  5.67step/s, img_s=247, loss=2.350]"
        "\rsingle-1cpu-b8:  50%|█████     | 2/4 [00:00<00:00,  7.11step/s, img_s=77, loss=2.388] "
        "\rsingle-1cpu-b8: 100%|██████████| 4/4 [00:00<00:00, 12.16step/s, img_s=295, loss=2.425]\n")


def run(chunks: list[str]) -> tuple[str, str, int]:
    term, log = io.StringIO(), io.StringIO()
    f = NativeLogFilter(term, log)
    for c in chunks:
        f.feed(c)
    f.close()
    return term.getvalue(), log.getvalue(), f.diverted


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_captured_stream_keeps_the_bars_and_logs_the_kineto_lines(size: int) -> None:
    chunks = [CAPTURED[i:i + size] for i in range(0, len(CAPTURED), size)]   # however the pipe splits it
    term, log, n = run(chunks)
    assert term == BARS
    assert log == "".join(HARMLESS_LINES) and n == 3


def test_a_bar_update_shows_at_once_not_at_the_next_line_end() -> None:
    term, log = io.StringIO(), io.StringIO()
    f = NativeLogFilter(term, log)
    f.feed("\rrun:  10%|█         | 1/10 [00:01<00:09]")
    assert term.getvalue() == "\rrun:  10%|█         | 1/10 [00:01<00:09]"
    f.feed("\rrun:  20%|██        | 2/10 [00:02<00:08]US")      # maybe the start of "USDT:"
    f.feed("ER typed text\n")                                    # it was not
    f.close()
    assert term.getvalue().endswith("2/10 [00:02<00:08]USER typed text\n") and log.getvalue() == ""


def test_two_ranks_lines_run_together_are_judged_one_by_one() -> None:
    stop0 = "USDT:2026-12-01 20:51:30 10964:10964 SyncActivityProfilerHandler.cpp:46] profiler_stop"
    stop1 = "USDT:2026-12-01 20:51:30 10965:10965 SyncActivityProfilerHandler.cpp:46] profiler_stop\n"
    real = "WARNING:2026-12-01 20:51:30 10965:10965 CuptiActivityProfiler.cpp:1057] Failed to recover\n"
    term, log, n = run([stop0 + stop1])
    assert (term, log, n) == ("", stop0 + "\n" + stop1, 2)
    term, log, n = run([stop0 + real])          # a harmless line must not hide the one glued to it
    assert (term, log, n) == (real, stop0 + "\n", 1)


@pytest.mark.parametrize("line", [
    "ERROR: the run failed: CUDA out of memory\n",                                          # not Kineto's format
    "WARNING:2026-12-01 20:44:49 6844:6844 CuptiActivityProfiler.cpp:1057] Failed to recover relationship "
    "between all profiler and kernel events\n",                                             # Kineto, not known-harmless
    "Traceback (most recent call last):\n",
    "error: run failed: RuntimeError: boom (details: run.json; --debug for the traceback)\n",
])
def test_everything_else_reaches_the_terminal(line: str) -> None:
    assert not is_harmless(line)
    term, log, n = run([line])
    assert term == line and log == "" and n == 0


def test_the_sweep_pump_sends_harmless_lines_to_the_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real child process writing the captured bytes to its stderr in pieces, through the sweep's pump."""
    term = io.StringIO()
    monkeypatch.setattr(sys, "stderr", term)
    code = ("import sys, time\n"
            f"data = {CAPTURED!r}.encode()\n"
            "for i in range(0, len(data), 50):\n"
            "    sys.stderr.buffer.write(data[i:i + 50]); sys.stderr.buffer.flush(); time.sleep(0.001)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    assert child.stderr is not None
    log_path = tmp_path / "cpu" / "single-1cpu-b8.log"
    thread, filt = pump_stderr(child.stderr, log_path)
    assert child.wait(timeout=60) == 0
    thread.join(timeout=60)
    assert term.getvalue() == BARS           # multi-byte bar characters split across reads survive
    assert log_path.read_text(encoding="utf-8") == "".join(HARMLESS_LINES) and filt.diverted == 3
