#!/usr/bin/env bash
# Bring every package the project needs to a machine that cannot reach a package registry (a GPU
# node behind a firewall, say), then install from those files alone.
#
#   bash benchmarks/wheels.sh download [DIR]   # on a connected machine: wheels into DIR (default wheels/)
#   bash benchmarks/wheels.sh install [DIR]    # on the offline machine, in the repository: .venv from DIR only
#   TORCH=none bash benchmarks/wheels.sh download [DIR]   # everything but torch, for a machine that has it
#   bash benchmarks/wheels.sh install-here [DIR]          # there: into the Python that has torch, no venv
#
# The download is for the target machine, which need not be this one: PYVER (default: this Python's,
# e.g. 3.11) and PLATFORM (default manylinux_2_28_x86_64) name it. TORCH_INDEX picks torch's build:
# CUDA 12.6 by default (https://download.pytorch.org/whl/cu126; with its NVIDIA libraries about
# 3 GB), https://download.pytorch.org/whl/cpu for a CPU machine (about 200 MB). Meta-World, MuJoCo
# (with its own EGL rendering for headless machines: MUJOCO_GL=egl needs only the GPU driver's
# libEGL) and the rest come from PyPI. Copy the folder along with the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-}; DIR=${2:-wheels}
PYVER=${PYVER:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
PLATFORM=${PLATFORM:-manylinux_2_28_x86_64}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cu126}
TORCH=${TORCH:-torch==2.13.0}
case "$MODE" in
  download)
    mkdir -p "$DIR"
    TARGET=(--only-binary=:all: --python-version "$PYVER" --platform "$PLATFORM" --platform manylinux2014_x86_64
            --platform manylinux_2_17_x86_64 --platform any -d "$DIR")
    if [ "$TORCH" = none ]; then  # the target has torch: leave it (and what only it needs) out
      grep -v '^torch' requirements.txt > "$DIR/requirements-no-torch.txt"
      pip download "${TARGET[@]}" -r "$DIR/requirements-no-torch.txt"
    else
      pip download "${TARGET[@]}" --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple "$TORCH"
      pip download "${TARGET[@]}" -r requirements.txt
    fi
    HOW=install; [ "$TORCH" = none ] && HOW=install-here
    echo "$(ls "$DIR" | wc -l) files, $(du -sh "$DIR" | cut -f1) in $DIR; copy it with the repository and run: bash benchmarks/wheels.sh $HOW $DIR"
    ;;
  install)
    [ -d "$DIR" ] || { echo "error: no wheel folder $DIR; run 'bash benchmarks/wheels.sh download $DIR' on a connected machine" >&2; exit 2; }
    python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
    pip install --no-index --find-links "$DIR" "$TORCH" -r requirements.txt
    python -c "import torch, metaworld, mujoco; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| mujoco', mujoco.__version__)"
    ;;
  install-here)
    [ -d "$DIR" ] || { echo "error: no wheel folder $DIR; run 'TORCH=none bash benchmarks/wheels.sh download $DIR' on a connected machine" >&2; exit 2; }
    python3 -c "import torch" 2>/dev/null || { echo "error: this Python has no torch; use 'bash benchmarks/wheels.sh install $DIR' with a full download" >&2; exit 2; }
    python3 -m pip install --no-index --find-links "$DIR" -r requirements.txt
    python3 -c "import torch, metaworld, mujoco; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| mujoco', mujoco.__version__)"
    ;;
  *)
    echo "usage: bash benchmarks/wheels.sh download|install|install-here [DIR]" >&2; exit 2 ;;
esac
