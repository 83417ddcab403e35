#!/usr/bin/env bash
# The six-task table at the CPU defaults: every task gets its own data, BC policy, world model,
# reward classifier and PPO run (`TASK=T bash run_all.sh`), then one table of BC against the refined
# policies on 06's 100 seeded real episodes, with the average beside the paper's 51.5% -> 67.5%
# (docs/RESULTS.md, "Six tasks at the CPU defaults").
#
#   bash benchmarks/six_cpu.sh                          # six tasks, one PPO seed: 20 min (stage 5 keeps BC) to an hour per task on 2 cores
#   TASKS="soccer door-lock" PPO_SEEDS="0 1 2" bash benchmarks/six_cpu.sh
#
# BC learns from 10 demonstrations (as in benchmarks/six_tasks.sh), except on button-press, whose run
# is the main command's (2 demonstrations: from 10 BC succeeds every time and leaves nothing to refine).
# Every stage reuses what is on disk, so a rerun resumes; the table is written to runs/six_cpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-"coffee-pull lever-pull soccer door-lock button-press drawer-close"}
PPO_SEEDS=${PPO_SEEDS:-0}
PRECISION=${PRECISION:-auto}
DIRS=""
for T in $TASKS; do
  DEMOS=10; [ "$T" = button-press ] && DEMOS=2
  echo "[$(date +%T)] $T (BC from $DEMOS demonstrations)"
  TASK=$T DEMOS=$DEMOS PPO_SEEDS="$PPO_SEEDS" PRECISION=$PRECISION bash run_all.sh
  R=runs/cpu; [ "$T" = button-press ] || R=$R-$T  # run_all.sh's folder for the task (a world model each)
  [ "$PRECISION" = auto ] || R=$R-$PRECISION
  DIRS="$DIRS $R"
done
# shellcheck disable=SC2086  # the lists are meant to split into words
python benchmarks/six_table.py --tasks $TASKS --run-dir $DIRS --refine-run-dir $DIRS --out runs/six_cpu.md
