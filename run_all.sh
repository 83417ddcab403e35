#!/usr/bin/env bash
# The whole World4RL pipeline on one task: 01 -> 04 -> 01 (policy rollouts) -> 02 -> 03 -> 05 -> 06. Every stage reuses what is on
# disk, so rerunning after an interruption picks up where it stopped.
#
#   bash run_all.sh                       # CPU defaults (2 cores): button-press, 48x48, BC from 2 demos
#   TASK=coffee-pull DEMOS=20 bash run_all.sh   # another Meta-World task (pick DEMOS so BC leaves room)
#   PPO_SEEDS="0 1 2" bash run_all.sh     # several refinement seeds (06 compares them all with BC)
#   CAM=topview bash run_all.sh           # another Meta-World camera (data and runs get their own folders)
#   PROFILE=gpu bash run_all.sh           # one GPU: same data and models, ~12x the world-model samples, ~40x the
#                                         # imagined PPO transitions, 3 PPO seeds (stages 2 and 5 as the README's "GPU run")
set -euo pipefail
cd "$(dirname "$0")"
export MUJOCO_GL=${MUJOCO_GL:-egl}
[ -t 2 ] || export TQDM_MININTERVAL=${TQDM_MININTERVAL:-30}  # into a log file: a progress line every 30 s, not every update
TASK=${TASK:-button-press}
DEMOS=${DEMOS:-2}
PROFILE=${PROFILE:-cpu}
SEED=${SEED:-0}
# Both profiles share the data (48x48). The CPU profile is cut to fit 60 minutes on 2 cores: a world model with
# few channels at full resolution (bf16 where the CPU has it; docs/RESULTS.md, "Throughput"), and PPO with 256
# imagined episodes per iteration. The GPU profile buys a wider world model trained on ~8x the samples, and more
# PPO iterations.
RES=48; DATA=data/cpu
if [ "$PROFILE" = gpu ]; then
  RUNS=runs/gpu; WM_CH="32 64 64 64"; WM_STEPS=6000; WM_BATCH=128; ENVS=256; ITERS=60; EVAL_EVERY=4; EVAL_EPS=128
  DEV=cuda; PPO_SEEDS=${PPO_SEEDS:-"0 1 2"}
else
  RUNS=runs/cpu; WM_CH="16 32 64 64"; WM_STEPS=3200; WM_BATCH=32; ENVS=256; ITERS=32; EVAL_EVERY=4; EVAL_EPS=128
  DEV=auto; PPO_SEEDS=${PPO_SEEDS:-0}
fi
CAM=${CAM:-corner}
if [ "$CAM" != corner ]; then DATA=$DATA-$CAM; RUNS=$RUNS-$CAM; fi
log() { echo "[$(date +%H:%M:%S)] $*"; }
T0=$(date +%s)
stamp() { echo "$1 $(( $(date +%s) - T0 ))s" >> "$RUNS/stage_times.txt"; }
mkdir -p "$RUNS"; : > "$RUNS/stage_times.txt"
# The paper's data recipe: the world model and the classifier also see rollouts of the
# imitation policy, so they know the states (and failures) of the policy being refined.
log "01 collect";     python 01_collect.py --tasks "$TASK" --resolution $RES --camera $CAM --data-dir $DATA --seed $SEED; stamp 01_collect
log "04 bc";          [ -f $RUNS/$TASK/bc_eval.json ] || \
                      python 04_bc.py --task "$TASK" --num-demos $DEMOS --data-dir $DATA --run-dir $RUNS --device $DEV --seed $SEED; stamp 04_bc
log "01 collect policy rollouts"
                      python 01_collect.py --tasks "$TASK" --resolution $RES --camera $CAM --data-dir $DATA --seed $SEED \
                        --policy $RUNS/$TASK/bc.pt --num-policy 150; stamp 01_collect_policy
log "02 world model"  # resumes, or returns at once if already trained and evaluated
                      python 02_world_model.py --tasks "$TASK" --data-dir $DATA --run-dir $RUNS --steps $WM_STEPS \
                        --batch-size $WM_BATCH --channels $WM_CH --device $DEV --seed $SEED; stamp 02_world_model
log "03 reward";      [ -f $RUNS/$TASK/reward_metrics.json ] || \
                      python 03_reward.py --task "$TASK" --data-dir $DATA --run-dir $RUNS --device $DEV --seed $SEED; stamp 03_reward
for S in $PPO_SEEDS; do
  log "05 ppo (seed $S)"; [ -f $RUNS/$TASK/ppo_seed$S/log.json ] || \
                      python 05_ppo_refine.py --task "$TASK" --data-dir $DATA --run-dir $RUNS --num-envs $ENVS \
                        --iterations $ITERS --eval-every $EVAL_EVERY --eval-episodes $EVAL_EPS --device $DEV --seed $S; stamp 05_ppo_refine_seed$S
done
log "06 eval";        python 06_eval.py --task "$TASK" --data-dir $DATA --run-dir $RUNS --device $DEV; stamp 06_eval
log "done: $RUNS/$TASK/eval/results.md"; cat "$RUNS/stage_times.txt"
