#!/usr/bin/env bash
# Stages 1, 3 and 4 on each task of the paper's `six` suite: the reward classifier's held-out
# metrics and the BC policy's real success, one row per task (docs/RESULTS.md, "Six tasks").
#
#   bash benchmarks/six_tasks.sh                  # CPU: 48x48, ~6 min per task on 2 cores
#   DEMOS=20 EPISODES=100 bash benchmarks/six_tasks.sh
#
# Every stage reuses what is on disk, so a rerun only fills in what is missing. No world model is
# trained here (so 03_reward.py skips its imagined-frame check); the table is written by
# benchmarks/six_table.py to <RUNS>/six_tasks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
[ -t 2 ] || export TQDM_MININTERVAL=${TQDM_MININTERVAL:-30}
DATA=${DATA:-data/cpu}; RUNS=${RUNS:-runs/six}; RES=${RES:-48}
DEMOS=${DEMOS:-10}                     # demonstrations per task for BC (the default task's run_all uses 2)
EPISODES=${EPISODES:-50}               # seeded real episodes per BC evaluation
TASKS=${TASKS:-"coffee-pull lever-pull soccer door-lock button-press drawer-close"}
for T in $TASKS; do
  echo "[$(date +%T)] $T"
  python 01_collect.py --tasks "$T" --resolution "$RES" --data-dir "$DATA"
  [ -f "$RUNS/$T/reward_metrics.json" ] || python 03_reward.py --task "$T" --data-dir "$DATA" --run-dir "$RUNS"
  [ -f "$RUNS/$T/bc_eval.json" ] || python 04_bc.py --task "$T" --num-demos "$DEMOS" --eval-episodes "$EPISODES" \
                                      --data-dir "$DATA" --run-dir "$RUNS"
done
python benchmarks/six_table.py --run-dir "$RUNS" --tasks $TASKS
