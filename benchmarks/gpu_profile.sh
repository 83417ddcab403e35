#!/usr/bin/env bash
# The GPU profile on one GPU machine, as one script: a rendering check, `PROFILE=gpu bash run_all.sh`
# (every stage on this machine: Meta-World rendered headless through EGL, stages 2-6 on the GPU),
# then world-model training samples/s with and without bf16 autocast and torch.compile on the run's
# data. Each part has a time limit, so the run ends with its logs even on a short GPU allocation; whatever
# run_all.sh finished stays on disk, and a second call resumes it (logs are appended).
# On one H200 stages 1-5 of a round took about 10.5 minutes (docs/RESULTS.md, "The GPU profile as one script").
# A machine with PyTorch but no package registry installs the rest from carried wheels first:
# `TORCH=none bash benchmarks/wheels.sh download` where pip works, `bash benchmarks/wheels.sh install-here` there.
#
#   bash benchmarks/gpu_profile.sh                              # everything: ROUNDS=2 (run_all.sh's GPU default)
#   ROUNDS=1 RUN_S=450 THR_S=100 bash benchmarks/gpu_profile.sh  # one round within 450 s, 100 s for throughput
#   ROUNDS=1 PPO_SEEDS=0 RUN_S=500 THR_S=60 bash benchmarks/gpu_profile.sh
#                       # one 10-minute call (a 15-minute GPU loan less the machine's start): one round with
#                       # one PPO seed, so 06 scores it in the simulator (about 8-9 min on an H200, estimated
#                       # from the stage times there), then the bf16/compile throughput for what is left
#
# Logs go to runs/gpu/profile_*.txt; the throughput table to runs/wm_throughput_gpu/table.md. Everything
# but the data and the world models is bundled in runs/gpu_profile_results.tgz (a few MB: logs, metrics,
# BC, classifier and refined policies) to copy off the GPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
RUN_S=${RUN_S:-3600}; THR_S=${THR_S:-300}  # time limits (seconds; 0 is no limit for timeout, so THR_S=0 skips)
THR_STEPS=${THR_STEPS:-500}  # per configuration, the profile's network and batch (compiling takes the first ~minute)
mkdir -p runs/gpu
{
  echo "[$(date +%T)] machine: $(nproc) cores; $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
  python -c "import torch, mujoco, metaworld; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| mujoco', mujoco.__version__)"
  # one rendered frame before any stage: a machine without a working EGL fails here, in one line
  python -c "
import common
env = common.make_env('button-press', common.EnvConfig())
print('render check: frame', env.reset(0).shape)" || { echo "error: Meta-World does not render here (MUJOCO_GL=$MUJOCO_GL)"; exit 2; }
} 2>&1 | tee runs/gpu/profile_check.txt
[ "${PIPESTATUS[0]}" = 0 ] || exit 2
T0=$(date +%s)
timeout "$RUN_S" env PROFILE=gpu bash run_all.sh >> runs/gpu/profile_run_all.txt 2>&1
RC=$?
echo "run_all.sh: exit status $RC after $(( $(date +%s) - T0 )) s (124: stopped at RUN_S=$RUN_S)" | tee -a runs/gpu/profile_run_all.txt
if [ "$THR_S" -gt 0 ] && [ -f data/cpu/meta.json ]; then  # THR_S=0: no throughput runs
  OUT=runs/wm_throughput_gpu DEVICE=cuda STEPS=$THR_STEPS BATCH=128 CHANNELS="32 64 64 64" \
    CONFIGS="1:fp32:0 1:bf16:0 1:fp32:1 1:bf16:1" timeout "$THR_S" \
    bash benchmarks/wm_throughput.sh > runs/wm_throughput_gpu.txt 2>&1
  echo "throughput: exit status $?" >> runs/wm_throughput_gpu.txt
  mkdir -p runs/wm_throughput_gpu; grep '^|' runs/wm_throughput_gpu.txt > runs/wm_throughput_gpu/table.md || true
  cat runs/wm_throughput_gpu.txt
fi
# the bundle: every log and metric, and the small checkpoints (world models stay: ~17 MB each with Adam)
find runs/gpu runs/gpu-round* runs/wm_throughput_gpu runs/wm_throughput_gpu.txt -type f \
  ! -name 'world_model*.pt' ! -name 'state.pt' ! -path '*/candidates/*' ! -name '*.tmp' 2>/dev/null \
  | tar czf runs/gpu_profile_results.tgz -T - && ls -l runs/gpu_profile_results.tgz
exit $RC
