#!/usr/bin/env bash
# Three PPO seeds at the CPU defaults, on the main command's data, BC policy, world model and classifier.
#
# Runs (or resumes) the main command, then refines with seeds 1 and 2 beside its seed 0, and scores
# all three with 06_eval.py on the same 100 real seeds and the same paired imagined starts. Each
# refined policy's real and imagined success, and its gain over BC, end up in
# runs/cpu/<task>/eval/results.md (table "real gain over BC").
#
#   bash benchmarks/cpu_seeds.sh            # after (or instead of) `bash run_all.sh`
#   SEEDS="0 1 2 3 4" bash benchmarks/cpu_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PPO_SEEDS=${SEEDS:-"0 1 2"} bash run_all.sh
