#!/usr/bin/env bash
# More compute for stages 2 and 5, same everything else: docs/RESULTS.md, "The GPU run".
#
# Takes the CPU pipeline's data and its BC policy and reward classifier as they are, and on one GPU
#   - trains the world model of the CPU configuration (same U-Net, same 48x48 data) for WM_MIN
#     minutes with a 4x larger batch: many times the samples the CPU run could afford;
#   - refines the BC policy in it with PPO for PPO_MIN minutes per seed, ENVS imagined episodes per
#     iteration (8x the CPU default), for each seed in SEEDS.
# The refined policies are then scored in the real simulator by 06_eval.py, on any machine:
#
#   DATA=data/cpu SRC=runs/cpu/button-press bash benchmarks/gpu_refine.sh runs/gpu    # on the GPU
#   python 06_eval.py --task button-press --data-dir data/cpu --run-dir runs/gpu       # anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${TASK:-button-press}
DATA=${DATA:-data/cpu}                 # stage-1 dataset (the CPU pipeline's)
SRC=${SRC:-runs/cpu/$TASK}             # holds bc.pt and reward.pt of stages 3 and 4
RUN=${1:-runs/gpu}
DEV=${DEV:-cuda}
WM_MIN=${WM_MIN:-3}; BATCH=${BATCH:-128}
PPO_MIN=${PPO_MIN:-1}; ENVS=${ENVS:-256}; EVAL_EPISODES=${EVAL_EPISODES:-128}; SEEDS=${SEEDS:-"0 1 2"}
# 05's trust region around BC, measured at the CPU defaults only: 0 (off) reproduces the GPU run;
# MAX_SHIFT=0.3 tries the CPU default here
mkdir -p "$RUN/$TASK"
for f in bc.pt reward.pt bc_eval.json reward_metrics.json; do
  [ -f "$RUN/$TASK/$f" ] || cp "$SRC/$f" "$RUN/$TASK/$f"
done
# 04's evaluation starts, for 05's check of imagination (without them 05 renders them in Meta-World)
[ -f "$RUN/$TASK/bc_eval_starts.npz" ] || [ ! -f "$SRC/bc_eval_starts.npz" ] || cp "$SRC/bc_eval_starts.npz" "$RUN/$TASK/"
python -c "import torch; print('torch', torch.__version__, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
echo "[$(date +%T)] 02 world model, $WM_MIN min, batch $BATCH"
python 02_world_model.py --tasks "$TASK" --data-dir "$DATA" --run-dir "$RUN" --steps 1000000 --channels 32 64 64 64 --precision fp32 \
  --max-minutes "$WM_MIN" --batch-size "$BATCH" --device "$DEV"
for S in $SEEDS; do
  echo "[$(date +%T)] 05 ppo seed $S, $PPO_MIN min, $ENVS envs"
  python 05_ppo_refine.py --task "$TASK" --data-dir "$DATA" --run-dir "$RUN" --num-envs "$ENVS" \
    --iterations 1000 --max-minutes "$PPO_MIN" --eval-every 4 --eval-episodes "$EVAL_EPISODES" \
    --init-std 0.1 --precision fp32 --device "$DEV" --seed "$S" --max-action-shift "${MAX_SHIFT:-0}"
done
echo "[$(date +%T)] done: now python 06_eval.py --task $TASK --data-dir $DATA --run-dir $RUN"
