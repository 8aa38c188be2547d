"""condor/profile.sub as condor_submit would read it, through the real htcondor2 bindings.

No pool here: each queued item is expanded with htcondor2.Submit.expand() and the values
asserted. Submit.jobs()/procs() are not implemented in these bindings and itemdata()
ignores slices and counts, so the item list is parsed by condor/submitcheck.py and
cross-checked against itemdata() where that is reliable.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from conftest import load_submitcheck

htcondor2 = pytest.importorskip("htcondor2")

ROOT = Path(__file__).resolve().parents[1]
CONDOR = ROOT / "condor"
PROFILE = CONDOR / "profile.sub"


sc = load_submitcheck()
SUBMIT_FILES = sorted(CONDOR.glob("*.sub"))


def jobs(**overrides: str) -> list[dict[str, str]]:
    return sc.expand_jobs(PROFILE, overrides, root=ROOT)


# --- lint ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SUBMIT_FILES, ids=lambda p: p.name)
def test_every_submit_file_lints_clean_and_parses(path: Path) -> None:
    text = path.read_text()
    assert sc.lint(text) == []
    sub = htcondor2.Submit(text)
    assert "executable" in sub.keys()
    assert sub.getQArgs().strip()


def test_lint_catches_misspelt_twice_set_unused_and_shadowing_keys() -> None:
    bad = """\
executable = condor/run.sh
requests_cpus = 4
request_memory = 1GB
request_memory = 2GB
SWEAP = seed
REQUEST_DISK = 1GB
if defined X
  universe = vanilla
else
  universe = container
endif
universe = container
queue gpus from condor/seed.txt
"""
    problems = "\n".join(sc.lint(bad))
    assert "unknown submit command 'requests_cpus'" in problems
    assert "line 4: request_memory is already set on line 3" in problems
    assert "knob SWEAP is never used" in problems
    assert "knob REQUEST_DISK has the name of the submit command request_disk" in problems
    assert "line 12: universe is already set on line 8" in problems
    # one key per if/else branch is fine: nothing about lines 8/10 conflicting with each other
    assert "line 10: universe" not in problems
    assert len(sc.lint(bad)) == 5


def test_lint_requires_one_final_queue_statement() -> None:
    assert sc.lint("executable = a.sh\n") == ["expected exactly one queue statement, found 0"]
    assert sc.lint("executable = a.sh\nqueue\nlog = x\n") == ["line 2: the queue statement must be the last line"]


def test_lint_knows_every_command_the_file_uses_as_an_htcondor_key() -> None:
    # every lower-case key the bindings report is a known command (the lint's list is not stale)
    sub = htcondor2.Submit(PROFILE.read_text())
    for key in sub.keys():
        if key.islower():
            assert key in sc.KNOWN_COMMANDS, key


# --- the item lists -----------------------------------------------------------------------
@pytest.mark.parametrize("sweep, expected", [
    ("seed", [("1", "single", "64"), ("2", "dp", "128"), ("4", "dp-layerwise", "256")]),
    ("fixed", [("1", "ddp", "64"), ("2", "ddp", "128"), ("4", "ddp", "256")]),
])
def test_item_lists_match_htcondor_itemdata(sweep: str, expected, monkeypatch) -> None:
    overrides = {} if sweep == "seed" else {"SWEEP": sweep}
    spec, item_file, items = sc.items_of(PROFILE, overrides, root=ROOT)
    assert item_file == CONDOR / f"{sweep}.txt"
    assert [(i["gpus"], i["strategy"], i["batch"]) for i in items] == expected
    monkeypatch.chdir(ROOT)                       # condor_submit resolves the list from the cwd
    head = "".join(f"{k} = {v}\n" for k, v in overrides.items())
    assert list(htcondor2.Submit(head + PROFILE.read_text()).itemdata()) == items


def test_item_list_parser_refuses_comments_and_ragged_rows(tmp_path: Path) -> None:
    with pytest.raises(sc.SubmitFileError, match="no comments"):
        sc.parse_items(["1, single, 64", "# 2, dp, 128"], ["gpus", "strategy", "batch"], "x.txt")
    with pytest.raises(sc.SubmitFileError, match="2 fields for 3 variables"):
        sc.parse_items(["1, single"], ["gpus", "strategy", "batch"], "x.txt")


def test_unknown_sweep_names_the_missing_list() -> None:
    with pytest.raises(sc.SubmitFileError, match=r"condor/nope\.txt does not exist"):
        jobs(SWEEP="nope")


# --- per-job values -----------------------------------------------------------------------
def test_seed_jobs_request_1_2_4_gpus_and_enough_cpus_for_the_loader() -> None:
    js = jobs()
    assert [j["request_gpus"] for j in js] == ["1", "2", "4"]
    for j in js:
        n = int(j["gpus"])
        args = j["arguments"].split()
        workers = int(args[args.index("--workers") + 1])
        assert int(j["request_cpus"]) >= workers + 1
        assert int(j["request_cpus"]) == n * (workers + 1)          # CPUS_PER_GPU scales with the GPUs
        assert sc.quantity(j["request_memory"], 1 << 20) == n * 12 * 1024
        assert sc.quantity(j["request_disk"], 1 << 10) >= 10 * 1024 * 1024
        assert j["retry_request_memory"] == "RequestMemory * 2"
        assert j["gpus_minimum_capability"] == "7.5"
        assert sc.quantity(j["gpus_minimum_memory"], 1 << 20) == 8192


def test_arguments_carry_the_item_to_the_runner() -> None:
    for j in jobs() + jobs(SWEEP="fixed"):
        args = j["arguments"].split()
        sweep, tarball, runner = args[0], args[1], args[2:]
        assert sweep in ("seed", "fixed")
        assert tarball == j["transfer_output_files"]
        opt = dict(zip(runner[::2], runner[1::2]))
        assert opt["--strategy"] == j["strategy"]
        assert opt["--gpus"] == j["gpus"] == j["request_gpus"]
        assert opt["--batch-size"] == j["batch"]
        assert opt["--device"] == "cuda"
        assert "--out" not in runner                             # run.sh owns the output folder


def test_seed_cpu_request_is_reproducible_by_macro() -> None:
    assert [j["request_cpus"] for j in jobs(JOB_CPUS="1")] == ["1", "1", "1"]
    assert [j["request_cpus"] for j in jobs(CPUS_PER_GPU="1")] == ["1", "2", "4"]
    assert [j["request_cpus"] for j in jobs(WORKERS="8")] == ["9", "18", "36"]


def test_output_names_are_unique_per_job_and_remapped_into_results() -> None:
    js = jobs() + jobs(SWEEP="fixed")
    tarballs = [j["transfer_output_files"] for j in js]
    # two submissions get different clusters; within one, process and configuration differ
    assert len(set(tarballs)) == len(tarballs)
    for j in js:
        (src, dst), = sc.remaps(j["transfer_output_remaps"]).items()
        assert src == j["transfer_output_files"]
        assert dst == f"results/{src}"
        assert re.fullmatch(r"scalescope_(seed|fixed)_1234_[0-2]_[a-z-]+-[124]gpu-b\d+\.tar\.gz", src)
        assert j["strategy"] in src and f"-{j['gpus']}gpu-b{j['batch']}" in src
    for kind in ("log", "output", "error"):
        names = [j[kind] for j in jobs()]
        assert names == [f"logs/1234_{p}.{ {'log': 'log', 'output': 'out', 'error': 'err'}[kind]}" for p in range(3)]


def test_every_transferred_input_exists_and_directories_transfer_as_directories() -> None:
    for j in jobs():
        inputs = sc.split_list(j["transfer_input_files"])
        assert {"models", "profiler", "analysis", "condor/requirements.txt"} <= set(inputs)
        for item in inputs:
            assert not item.endswith("/"), f"{item}: a trailing slash would send only its contents"
            assert (ROOT / item).exists(), item
        for pkg in ("models", "profiler", "analysis"):
            assert (ROOT / pkg / "__init__.py").is_file()
    assert (ROOT / "models" / "train.py").is_file()
    assert (CONDOR / "run.sh").stat().st_mode & 0o111


def test_default_environment_is_a_pinned_pytorch_container() -> None:
    for j in jobs():
        assert j["universe"] == "container"
        image = j["container_image"]
        assert re.fullmatch(r"docker://pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", image), image
        cuda = re.search(r"cuda(\d+\.\d+)", image).group(1)
        assert j["gpus_minimum_runtime"] == cuda                 # the driver must run the image's CUDA


def test_conda_pack_alternative_switches_universe_and_ships_the_pack(tmp_path: Path) -> None:
    pack = tmp_path / "scalescope-env.tar.gz"
    pack.write_bytes(b"")
    for j in jobs(ENV_PACK=str(pack)):
        assert j["universe"] == "vanilla"
        assert j["container_image"] == ""
        inputs = sc.split_list(j["transfer_input_files"])
        assert inputs[-1] == str(pack)
        assert all(Path(i).exists() or (ROOT / i).exists() for i in inputs)


def test_chtc_gpu_lab_attributes_are_set() -> None:
    for j in jobs():
        assert j["MY.WantGPULab"] == "true"
        assert j["MY.GPUJobLength"] == '"short"'


# --- what the job installs ----------------------------------------------------------------
IMAGE_PROVIDES = {"torch", "torchvision", "numpy", "PIL"}
IMPORT_TO_DIST = {"pynvml": "nvidia-ml-py", "PIL": "pillow"}


def _third_party_imports() -> set[str]:
    local = {"models", "profiler", "analysis",
             "_scalescope_private"}       # attach's boot folder: scalescope's own loader, on the command's path
    found: set[str] = set()
    for pkg in local:
        for py in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(py.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in local and top not in sys.stdlib_module_names and top != "__future__":
                        found.add(top)
    return found


def test_requirements_cover_every_import_the_image_lacks() -> None:
    pinned = {}
    for line in (CONDOR / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line}: pin an exact version"
            pinned[name.lower()] = version
    needed = {IMPORT_TO_DIST.get(m, m).lower() for m in _third_party_imports() - IMAGE_PROVIDES}
    assert needed <= set(pinned), f"missing from condor/requirements.txt: {sorted(needed - set(pinned))}"
    assert "torch" not in pinned                                  # the image's torch is the point


def test_the_runner_accepts_every_jobs_arguments() -> None:
    from models import config

    for j in jobs() + jobs(SWEEP="fixed") + jobs(RUN_ARGS="--pin-memory --epochs 2"):
        runner_args = j["arguments"].split()[2:]
        ns = config.build_parser().parse_args(runner_args)
        assert (ns.strategy, ns.gpus, ns.batch_size, ns.device) == (j["strategy"], int(j["gpus"]), int(j["batch"]), "cuda")


def test_docs_explain_every_knob() -> None:
    knobs = re.findall(r"^if ! defined (\w+)$", PROFILE.read_text(), re.MULTILINE)
    assert len(knobs) >= 10
    doc = (ROOT / "docs" / "condor.md").read_text()
    for knob in knobs:
        assert f"`{knob}`" in doc, f"docs/condor.md does not explain {knob}"


def test_run_sh_checks_for_every_required_package_before_skipping_the_install() -> None:
    check = re.search(r'-c "import ([^"]+)"', (CONDOR / "run.sh").read_text()).group(1)
    modules = {m.strip() for m in check.split(",")}
    dist_to_module = {v: k for k, v in IMPORT_TO_DIST.items()}
    for line in (CONDOR / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            dist = line.partition("==")[0]
            assert dist_to_module.get(dist, dist) in modules, dist
