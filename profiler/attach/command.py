"""What the parent can tell from COMMAND's words alone: the run's name and whether it is torchrun.

Pure functions over argv; nothing here runs the command.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence

__all__ = ["is_python", "torchrun_args", "script_name", "resolve_executable", "helper_role"]

_PYTHON = re.compile(r"^python(?:\d+(?:\.\d+)?)?$")
_VALUE_OPTIONS = {"-W", "-X", "-Q"}        # python options that take the next word


def is_python(word: str) -> bool:
    return bool(_PYTHON.match(os.path.basename(word)))


def _python_target(args: Sequence[str]) -> tuple[str, list[str]] | None:
    """For `python [opts] (script | -m mod | -c code) ...`: ("script"|"module"|"code", the rest)."""
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-m" and i + 1 < len(args):
            return "module", list(args[i + 1:])
        if a.startswith("-m") and len(a) > 2:
            return "module", [a[2:], *args[i + 1:]]
        if a == "-c":
            return "code", list(args[i + 1:])
        if a in _VALUE_OPTIONS:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return "script", list(args[i:])
    return None


def torchrun_args(command: Sequence[str]) -> list[str] | None:
    """torchrun's own arguments and the rest (`torchrun ...` or `python -m torch.distributed.run ...`), else None."""
    if not command:
        return None
    if os.path.basename(command[0]) == "torchrun":
        return list(command[1:])
    if is_python(command[0]):
        target = _python_target(command[1:])
        if target and target[0] == "module" and target[1][0] in ("torch.distributed.run", "torch.distributed.launch"):
            return target[1][1:]
    return None


def _torchrun_script(args: Sequence[str]) -> list[str]:
    """The training script and its args after torchrun's options (all of the `--opt value` / `--opt=value` form)."""
    i = 0
    flags = {"--standalone", "--no-python", "--no_python", "--run-path", "--run_path", "--module", "-m"}
    module = False
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if a in flags:
            module = module or a in ("--module", "-m")
            i += 1
            continue
        if a.startswith("--") and "=" in a:
            i += 1
            continue
        if a.startswith("-"):
            i += 2
            continue
        break
    rest = list(args[i:])
    return ["-m", *rest] if module and rest else rest


_SHELLS = {"sh", "bash", "dash", "zsh", "ksh"}


def script_name(command: Sequence[str]) -> str:
    """A run name from the command: the script's stem (Python's, or a shell wrapper's), the module's last
    part, else the program's name."""
    words = list(command)
    if len(words) > 1 and os.path.basename(words[0]) in _SHELLS and not words[1].startswith("-"):
        return _safe(os.path.splitext(os.path.basename(words[1]))[0]) or "run"
    tr = torchrun_args(words)
    if tr is not None:
        words = ["python", *_torchrun_script(tr)]
    target = _python_target(words[1:]) if words and is_python(words[0]) else None
    if target is not None:
        kind, rest = target
        if kind == "script" and rest:
            stem = os.path.splitext(os.path.basename(rest[0]))[0]
            return _safe(stem) or "python"
        if kind == "module" and rest:
            return _safe(rest[0].rsplit(".", 1)[-1]) or "python"
        return "python"
    return _safe(os.path.basename(words[0])) if words else "run"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")


def resolve_executable(word: str) -> str | None:
    """The file `word` runs (a PATH lookup, or a path that is an executable file), else None."""
    if os.sep in word:
        return word if os.path.isfile(word) and os.access(word, os.X_OK) else None
    return shutil.which(word)


def helper_role(argv: Sequence[str], environ: dict[str, str] | os._Environ[str]) -> str | None:
    """Why a process started by exec is a helper, never a training process (multiprocessing's resource
    tracker or fork server, torchrun's agent), else None. `argv` is `sys.orig_argv`: the interpreter's
    whole command line. Multiprocessing's children are told apart by what they do (inprocess)."""
    joined = " ".join(argv)
    if "multiprocessing.resource_tracker" in joined or "multiprocessing.forkserver" in joined:
        return "multiprocessing's helper"
    if "LOCAL_RANK" not in environ:
        if torchrun_args(argv) is not None:
            return "torchrun's agent"
        target = _python_target(argv[1:]) if argv and is_python(argv[0]) else None
        if target and target[0] == "script" and target[1] and os.path.basename(target[1][0]) == "torchrun":
            return "torchrun's agent"
    return None
