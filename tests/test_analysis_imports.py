"""Every analysis module and the traces/ contract import where torch cannot (docs/design.md: analysis never imports torch)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, cli_env, no_torch_child

# Run in a fresh interpreter with torch blocked (conftest.no_torch_child): import every module named.
_IMPORT_ALL = no_torch_child(r"""
failed = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed[module] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"failed": failed, "torch_loaded": sorted(m for m in sys.modules if m.partition(".")[0] == "torch")}))
""")


def _modules(package: Path) -> list[str]:
    """Every module of the package, subpackages included (analysis.whatif.*), __main__ left out."""
    out = []
    for p in sorted(package.rglob("*.py")):
        parts = p.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__main__" or "__pycache__" in parts:
            continue
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(set(out))


def test_every_analysis_module_and_the_contract_import_without_torch() -> None:
    modules = _modules(REPO / "analysis") + _modules(REPO / "profiler" / "contract")
    assert "analysis.step.breakdown" in modules and "profiler.contract.runjson" in modules
    assert "analysis.whatif.predict" in modules
    res = subprocess.run([sys.executable, "-c", _IMPORT_ALL, *modules], cwd=REPO, env=cli_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["failed"] == {}, "\n".join(f"{m}: {e}" for m, e in out["failed"].items())
    assert out["torch_loaded"] == []
