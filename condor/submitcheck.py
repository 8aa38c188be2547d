"""Check an HTCondor submit file offline: lint it, expand every queued job, build its job ad.

    python condor/submitcheck.py [condor/profile.sub] [NAME=value ...]

prints one row per job (what condor_submit would queue: GPUs, CPUs, memory, disk, the
tarball it returns) after a lint that fails on unknown or misspelt commands (requests_cpus),
keys set twice, and UPPER_CASE knobs that are never used. No pool is needed: the submit
language is parsed by the real HTCondor bindings (htcondor2); the queue item list is read
here, because the bindings' itemdata() ignores slices and counts. Run it from the
repository root, like condor_submit. NAME=value arguments act like condor_submit's: they are
read before the file.

job_ad() approximates what condor_submit puts into a job ClassAd from the documented rules
(request_* become Request*, gpus_minimum_* become RequireGPUs, and the resource clauses are
appended to Requirements), so Requirements can be evaluated with classad2 against machine
ads. Only a real condor_submit (-dry-run) on a pool shows the exact text it generates.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

# Submit commands condor_submit knows (HTCondor 25.x manual and submit_utils.h), lower case.
KNOWN_COMMANDS: frozenset[str] = frozenset("""
accounting_group accounting_group_user allow_startup_script allowed_execute_duration allowed_job_duration
append_files arguments batch_name batch_project batch_queue batch_runtime batch_extra_submit_args
buffer_block_size buffer_files buffer_size checkpoint_destination checkpoint_exit_code
compress_files concurrency_limits concurrency_limits_expr container_image container_is_common
container_service_names container_target_dir copy_to_spool core_size coresize cron_day_of_month
cron_day_of_week cron_hour cron_minute cron_month cron_prep_time cron_window cuda_version dagman_log
deferral_prep_time deferral_time deferral_window description docker_image docker_network_type
docker_override_entrypoint docker_pull_policy docker_send_credentials dont_encrypt_input_files
dont_encrypt_output_files email_attributes encrypt_execute_directory encrypt_input_files
encrypt_output_files env environment erase_output_and_error_on_restart error executable
fetch_files file_remaps getenv gpus_maximum_capability gpus_minimum_capability gpus_minimum_memory
gpus_minimum_runtime grid_resource hold hold_kill_sig image_size initialdir initial_dir input
jar_files java_vm_args job_ad_information_attrs job_lease_duration job_machine_attrs
job_machine_attrs_history_length job_max_vacate_time keep_claim_idle kill_sig kill_sig_timeout
leave_in_queue load_profile local_files log log_xml machine_count manifest manifest_dir
match_list_length max_idle max_job_retirement_time max_materialize max_retries max_transfer_input_mb
max_transfer_output_mb mount_under_scratch next_job_start_delay nice_user noop_job
noop_job_exit_code noop_job_exit_signal notification notify_user on_exit_hold on_exit_hold_reason
on_exit_hold_subcode on_exit_remove output output_destination periodic_hold periodic_hold_reason
periodic_hold_subcode periodic_release periodic_remove periodic_vacate preserve_relative_paths
primary_unix_group priority public_input_files rank remote_initialdir remove_kill_sig rendezvousdir
request_cpus request_disk request_gpus request_memory require_gpus requirements
retry_request_disk retry_request_memory retry_request_memory_increase retry_request_memory_max
retry_until run_as_owner scitokens_file shell should_transfer_files skip_filechecks skip_if_dataflow
stack_size starter_debug starter_log stream_error stream_input stream_output submit_event_notes
success_exit_code suspend_job_at_exec transfer_checkpoint_files transfer_container transfer_error
transfer_executable transfer_input transfer_input_files transfer_output transfer_output_files
transfer_output_remaps transfer_plugins ulog_execute_attrs universe use_oauth_services
use_scitokens use_x509userproxy want_graceful_removal want_io_proxy when_to_transfer_output
x509userproxy
""".split())

# The attributes (besides the expanded item variables) whose per-job values check_jobs reports.
EXPANDED = ("arguments", "request_gpus", "request_cpus", "request_memory", "request_disk",
            "retry_request_memory", "transfer_input_files", "transfer_output_files",
            "transfer_output_remaps", "universe", "container_image", "log", "output", "error",
            "gpus_minimum_capability", "gpus_minimum_memory", "gpus_minimum_runtime", "requirements")

_ASSIGN = re.compile(r"^\s*([+A-Za-z_][A-Za-z0-9_.]*)\s*=(.*)$")
_QUEUE = re.compile(r"^\s*queue\b(.*)$", re.IGNORECASE)
_IF = re.compile(r"^\s*(if|elif|else|endif)\b", re.IGNORECASE)


class SubmitFileError(Exception):
    """The submit file cannot be understood (bad queue statement, item list, ...)."""


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) with backslash continuations joined and comments dropped."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for no, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = no
            if raw.lstrip().startswith("#"):
                continue
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        line, buf = buf + raw, ""
        if line.strip():
            out.append((start, line))
    return out


def lint(text: str) -> list[str]:
    """Problems in a submit description, one line each; empty when it is clean.

    Lower-case keys must be HTCondor submit commands; UPPER_CASE keys are this project's
    knobs and must be used somewhere (a misspelt knob is never used) and must not shadow a
    command (submit keys are case-insensitive); +Attributes are custom job attributes.
    A key may be set once per branch of an if/else, never twice on one path.
    """
    problems: list[str] = []
    seen: dict[str, list[tuple[int, tuple[tuple[int, int], ...]]]] = {}
    stack: list[list[int]] = []            # [block id, branch index]
    blocks = 0
    queue_lines: list[int] = []
    lines = _logical_lines(text)
    for no, line in lines:
        m_if = _IF.match(line)
        if m_if:
            word = m_if.group(1).lower()
            if word == "if":
                blocks += 1
                stack.append([blocks, 0])
            elif not stack:
                problems.append(f"line {no}: '{word}' without 'if'")
            elif word in ("elif", "else"):
                stack[-1][1] += 1
            else:
                stack.pop()
            continue
        if _QUEUE.match(line):
            queue_lines.append(no)
            continue
        m = _ASSIGN.match(line)
        if not m:
            problems.append(f"line {no}: not a 'key = value' line: {line.strip()!r}")
            continue
        key = m.group(1)
        path = tuple((b, br) for b, br in stack)
        name = key.lower()
        for other_no, other_path in seen.get(name, []):
            common = min(len(path), len(other_path))
            diverged = any(path[i][0] == other_path[i][0] and path[i][1] != other_path[i][1]
                           for i in range(common))
            if not diverged:
                problems.append(f"line {no}: {key} is already set on line {other_no}")
                break
        seen.setdefault(name, []).append((no, path))
        if key.startswith("+") or key.startswith("MY."):
            continue
        if key.isupper():
            if name in KNOWN_COMMANDS or name.startswith("request_"):
                problems.append(f"line {no}: knob {key} has the name of the submit command {name} "
                                f"(submit keys ignore case)")
            elif not re.search(r"\$[A-Za-z]*\(\s*" + re.escape(key) + r"\b", text):
                problems.append(f"line {no}: knob {key} is never used (misspelt?)")
            continue
        if name not in KNOWN_COMMANDS:
            problems.append(f"line {no}: unknown submit command {key!r}")
    if stack:
        problems.append("an 'if' has no 'endif'")
    if len(queue_lines) != 1:
        problems.append(f"expected exactly one queue statement, found {len(queue_lines)}")
    elif lines and lines[-1][0] != queue_lines[0]:
        problems.append(f"line {queue_lines[0]}: the queue statement must be the last line")
    return problems


@dataclass
class QueueSpec:
    variables: list[str]
    source: str                 # the item file name as written (may hold macros), or "(inline)"
    inline: list[str] | None    # inline items, when the queue statement has ( ... )


def parse_queue(text: str) -> QueueSpec:
    """The `queue v1, v2 from FILE` or `queue v1, v2 from ( ... )` statement."""
    m = re.search(r"^\s*queue\s+(.+?)\s+from\s+(.*)$", text, re.IGNORECASE | re.MULTILINE | re.DOTALL)
    if not m:
        raise SubmitFileError("no 'queue <vars> from <list>' statement")
    variables = [v for v in re.split(r"[,\s]+", m.group(1).strip()) if v]
    rest = m.group(2).strip()
    if rest.startswith("("):
        body = rest[1:rest.index(")")] if ")" in rest else rest[1:]
        return QueueSpec(variables, "(inline)", [ln for ln in body.splitlines()])
    return QueueSpec(variables, rest.splitlines()[0].strip(), None)


def parse_items(lines: Sequence[str], variables: Sequence[str], where: str) -> list[dict[str, str]]:
    """Item rows -> dicts; refuses comments (HTCondor would queue them) and wrong field counts."""
    items: list[dict[str, str]] = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            raise SubmitFileError(f"{where}:{no}: item lists take no comments (HTCondor would queue it as a job)")
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if len(fields) != len(variables):
            raise SubmitFileError(f"{where}:{no}: {len(fields)} fields for {len(variables)} variables "
                                  f"({', '.join(variables)})")
        items.append(dict(zip(variables, fields)))
    if not items:
        raise SubmitFileError(f"{where}: no items")
    return items


def _submit(text: str, overrides: Mapping[str, str]):
    import htcondor2
    head = "".join(f"{k} = {v}\n" for k, v in overrides.items())
    return htcondor2.Submit(head + text)


def items_of(path: Path, overrides: Mapping[str, str] = {}, root: Path = Path(".")) -> tuple[QueueSpec, Path | None, list[dict[str, str]]]:
    """The queue statement, the item file it reads (macros expanded) and its items."""
    text = path.read_text()
    spec = parse_queue(text)
    if spec.inline is not None:
        return spec, None, parse_items(spec.inline, spec.variables, str(path))
    sub = _submit(text, overrides)
    sub["ITEM_FILE__"] = spec.source
    item_file = root / sub.expand("ITEM_FILE__")
    if not item_file.is_file():
        raise SubmitFileError(f"{path}: item list {item_file} does not exist")
    return spec, item_file, parse_items(item_file.read_text().splitlines(), spec.variables, str(item_file))


def expand_jobs(path: Path, overrides: Mapping[str, str] = {}, root: Path = Path("."),
                cluster: int = 1234) -> list[dict[str, str]]:
    """One dict per queued job: the item's variables plus every EXPANDED attribute as submit sees it."""
    spec, _, items = items_of(path, overrides, root)
    sub = _submit(path.read_text(), overrides)
    jobs = []
    for proc, item in enumerate(items):
        sub["Cluster"], sub["Process"] = str(cluster), str(proc)
        sub["ClusterId"], sub["ProcId"] = str(cluster), str(proc)
        for k, v in item.items():
            sub[k] = v
        job = dict(item)
        keys = {k.lower() for k in sub.keys()}
        for attr in EXPANDED:
            job[attr] = sub.expand(attr) if attr in keys else ""
        for k in sub.keys():
            if k.startswith(("+", "MY.")):
                job[k] = sub.expand(k)
        jobs.append(job)
    return jobs


_UNITS = {"": None, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "T": 1 << 40, "TB": 1 << 40}


def quantity(text: str, default_unit: int) -> int:
    """'12GB' -> bytes / default_unit, as condor_submit reads request_memory (MiB) or request_disk (KiB)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise SubmitFileError(f"not a quantity: {text!r}")
    unit = _UNITS[m.group(2).upper()]
    value = float(m.group(1))
    return int(value) if unit is None else int(value * unit // default_unit)


def split_list(text: str) -> list[str]:
    """transfer_input_files-style comma/space separated list."""
    return [x for x in re.split(r"[,\s]+", text.strip()) if x]


def remaps(text: str) -> dict[str, str]:
    """transfer_output_remaps "a = b; c = d" -> {a: b, c: d}."""
    body = text.strip().strip('"')
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in body.split(";"))):
        src, _, dst = part.partition("=")
        out[src.strip()] = dst.strip()
    return out


def job_ad(job: Mapping[str, str]):
    """A classad2.ClassAd with the Request*/RequireGPUs/Requirements condor_submit would derive."""
    import classad2
    ad = classad2.ClassAd()
    ad["RequestCpus"] = int(job["request_cpus"])
    ad["RequestGPUs"] = int(job["request_gpus"])
    ad["RequestMemory"] = quantity(job["request_memory"], 1 << 20)
    ad["RequestDisk"] = quantity(job["request_disk"], 1 << 10)
    gpu_clauses = []
    if job.get("gpus_minimum_capability"):
        gpu_clauses.append(f"(Capability >= {float(job['gpus_minimum_capability'])})")
    if job.get("gpus_minimum_memory"):
        gpu_clauses.append(f"(GlobalMemoryMB >= {quantity(job['gpus_minimum_memory'], 1 << 20)})")
    if job.get("gpus_minimum_runtime"):
        major, _, minor = job["gpus_minimum_runtime"].partition(".")
        gpu_clauses.append(f"(MaxSupportedVersion >= {int(major) * 1000 + int(minor or 0) * 10})")
    clauses = [f"({job['requirements']})"] if job.get("requirements") else []
    clauses += ['(TARGET.Arch == "X86_64")', '(TARGET.OpSys == "LINUX")',
                "(TARGET.Disk >= RequestDisk)", "(TARGET.Memory >= RequestMemory)",
                "(TARGET.Cpus >= RequestCpus)"]
    if gpu_clauses:
        ad["RequireGPUs"] = classad2.ExprTree(" && ".join(gpu_clauses))
        clauses.append("(countMatches(MY.RequireGPUs, TARGET.AvailableGPUs) >= RequestGPUs)")
    else:
        clauses.append("(TARGET.GPUs >= RequestGPUs)")
    ad["Requirements"] = classad2.ExprTree(" && ".join(clauses))
    for k, v in job.items():
        if k.startswith(("+", "MY.")):
            ad[k.lstrip("+").removeprefix("MY.")] = classad2.ExprTree(v)
    return ad


def matches(job: Mapping[str, str], machine) -> bool:
    """True only when the job's Requirements evaluate to exactly True against the machine ad."""
    ad = job_ad(job)
    return ad["Requirements"].eval(scope=ad, target=machine) is True


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args.pop(0)) if args and "=" not in args[0] else Path("condor/profile.sub")
    overrides = dict(a.split("=", 1) for a in args)
    try:
        problems = lint(path.read_text())
        for p in problems:
            print(f"{path}: {p}", file=sys.stderr)
        jobs = expand_jobs(path, overrides)
    except (OSError, SubmitFileError) as exc:
        print(f"submitcheck: {exc}", file=sys.stderr)
        return 2
    print(f"{'gpus':>4} {'strategy':<13} {'batch':>5} {'cpus':>4} {'memory':>7} {'disk':>6}  returns")
    for j in jobs:
        print(f"{j['request_gpus']:>4} {j.get('strategy', '?'):<13} {j.get('batch', '?'):>5} {j['request_cpus']:>4} "
              f"{j['request_memory']:>7} {j['request_disk']:>6}  {', '.join(remaps(j['transfer_output_remaps']).values())}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
