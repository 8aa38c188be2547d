#!/bin/bash
# Build scalescope-env.tar.gz once: the conda environment of env.yml packed with conda-pack,
# the alternative to the container image (condor/profile.sub ENV_PACK=...). Jobs unpack it
# (condor/run.sh) instead of installing Miniconda and solving the environment every time.
#
# usage: condor/build_env_pack.sh [ENV_YML] [OUTPUT]     (defaults: env.yml scalescope-env.tar.gz)
# needs: conda (Miniforge/Miniconda); conda-pack comes from env.yml itself (or from PATH)
#
# The submit node usually has no GPU, so conda would pick CPU-only PyTorch builds; the CUDA
# version the GPU builds target is declared with CONDA_OVERRIDE_CUDA (default 12.6, matching
# gpus_minimum_runtime in condor/profile.sub). Then, on CHTC for example:
#   cp scalescope-env.tar.gz /staging/<netid>/
#   condor_submit condor/profile.sub ENV_PACK=osdf:///chtc/staging/<netid>/scalescope-env.tar.gz
# The file must keep the name scalescope-env.tar.gz: that is what run.sh looks for.
set -euo pipefail

yml=${1:-env.yml}
out=${2:-scalescope-env.tar.gz}
die() { echo "build_env_pack.sh: $*" >&2; exit 2; }

[ -f "$yml" ] || die "no $yml here (run from the repository root, or name the file)"
command -v conda >/dev/null 2>&1 || die "needs conda on PATH (install Miniforge), then conda-pack"
[ "$(basename "$out")" = scalescope-env.tar.gz ] || echo "build_env_pack.sh: note: run.sh only unpacks a file named scalescope-env.tar.gz" >&2

export CONDA_OVERRIDE_CUDA=${CONDA_OVERRIDE_CUDA:-12.6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "creating the environment of $yml (CUDA $CONDA_OVERRIDE_CUDA builds) in $work/env" >&2
conda env create --quiet --file "$yml" --prefix "$work/env"
packer="$work/env/bin/conda-pack"
[ -x "$packer" ] || packer=$(command -v conda-pack) || die "needs conda-pack (in env.yml, or: conda install -n base -c conda-forge conda-pack)"
"$packer" --prefix "$work/env" --output "$out.part" --ignore-editable-packages --force
mv -f "$out.part" "$out"
echo "wrote $out ($(du -h "$out" | cut -f1)); put it where jobs can fetch it and submit with ENV_PACK=<url or path>" >&2
