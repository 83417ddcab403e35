#!/usr/bin/env bash
# One more round of the refine -> collect -> retrain loop, with real rollouts of *every* PPO seed's
# refined policy (run_all.sh's ROUNDS=K rolls out only the first seed's).
#
# From a finished round (its data folder and its runs folder with ppo_seed<S>/refined.pt for each
# seed), this copies the data, adds ROLLOUTS real rollouts of each seed's refined policy (labelled
# by the simulator), trains the world model and the classifier again on the grown data, refines BC
# in them with every seed, and scores all policies with 06_eval.py on its 100 paired starts. Stages
# 2-6 train on data/TO-balanced: all of data/TO but the new rollouts' successes thinned, so that the
# data's success share stays where it was (benchmarks/balance_successes.py). Better policies' rollouts
# otherwise fill the data with successes and every policy, BC included, reads 14-18 points high in
# imagination (docs/RESULTS.md, "A third round"). Every command is printed before it runs; a rerun resumes.
#
#   FROM_DATA=data/cpu-round2 FROM_RUNS=runs/cpu-round2 TO=cpu-round3 SEEDS="0 1 2" bash benchmarks/next_round.sh
#       # -> data/cpu-round3(-balanced), runs/cpu-round3/button-press/eval/results.md (~90 min on 2 cores)
#   SHARE=off ...    # train on all of data/TO (the success share grows)
#   SHARE=0.40 ...   # hold this share instead of the old data's
# A round after a balanced one starts from the full folder (FROM_DATA=data/TO, not data/TO-balanced)
# and needs SHARE= the share held before, or it holds the full folder's; that is not measured.
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${TASK:-button-press}
SEEDS=${SEEDS:-"0 1 2"}
ROLLOUTS=${ROLLOUTS:-150}
: "${FROM_DATA:?set FROM_DATA to the data folder of the finished round, e.g. data/cpu-round2}"
: "${FROM_RUNS:?set FROM_RUNS to the runs folder of the finished round, e.g. runs/cpu-round2}"
: "${TO:?set TO to the name of the new round, e.g. cpu-round3 (data/TO and runs/TO)}"
export MUJOCO_GL=${MUJOCO_GL:-egl}
[ -t 2 ] || export TQDM_MININTERVAL=${TQDM_MININTERVAL:-30}
DK=data/$TO; RK=runs/$TO
[ -d "$FROM_DATA/$TASK" ] || { echo "error: no episodes in $FROM_DATA/$TASK: set FROM_DATA to a collected data folder" >&2; exit 2; }
# 01 fills policy_0000 .. policy_<N-1>, so a folder with gaps in those names (a balanced copy, whose
# dropped successes leave holes) would get new rollouts in the holes, where they do not count as new.
NP=$(find "$FROM_DATA/$TASK" -name 'policy_*.npz' | wc -l)
LAST=$(find "$FROM_DATA/$TASK" -name 'policy_*.npz' | sed 's/.*policy_0*\([0-9][0-9]*\)\.npz/\1/' | sort -n | tail -1)
[ "$NP" = 0 ] || [ "$(( LAST + 1 ))" = "$NP" ] || { echo "error: $FROM_DATA/$TASK has gaps in its policy_*.npz numbers (a balanced copy?): start from the full data folder of that round" >&2; exit 2; }
for S in $SEEDS; do
  [ -f "$FROM_RUNS/$TASK/ppo_seed$S/refined.pt" ] || { echo "error: no $FROM_RUNS/$TASK/ppo_seed$S/refined.pt: finish that round's PPO seed $S first, or set SEEDS" >&2; exit 2; }
done
run() { echo "+ $*"; "$@"; }
[ -d "$DK" ] || { rm -rf "$DK.tmp"; cp -R "$FROM_DATA" "$DK.tmp"; mv "$DK.tmp" "$DK"; }
mkdir -p "$RK/$TASK"; cp "$FROM_RUNS/$TASK/bc.pt" "$FROM_RUNS/$TASK/bc_eval.json" "$RK/$TASK/"  # the same BC
[ ! -f "$FROM_RUNS/$TASK/bc_eval_starts.npz" ] || cp "$FROM_RUNS/$TASK/bc_eval_starts.npz" "$RK/$TASK/"  # for 05's check
# 01 counts the policy rollouts on disk, so each seed's target is the count so far plus ROLLOUTS.
N0=$NP; N=$NP
for S in $SEEDS; do
  N=$(( N + ROLLOUTS ))
  run python 01_collect.py --tasks "$TASK" --data-dir "$DK" --policy "$FROM_RUNS/$TASK/ppo_seed$S/refined.pt" --num-policy $N
done
SHARE=${SHARE:-hold}
if [ "$SHARE" != off ]; then  # train on a copy whose success share does not grow with the new rollouts
  SF=""; [ "$SHARE" = hold ] || SF="--share $SHARE"
  # shellcheck disable=SC2086
  [ -d "$DK-balanced" ] || run python benchmarks/balance_successes.py --task "$TASK" --data-dir "$DK" --out "$DK-balanced" \
    --from-index "$N0" $SF
  DK=$DK-balanced
fi
run python 02_world_model.py --tasks "$TASK" --data-dir "$DK" --run-dir "$RK"
[ -f "$RK/$TASK/reward_metrics.json" ] || run python 03_reward.py --task "$TASK" --data-dir "$DK" --run-dir "$RK"
for S in $SEEDS; do
  SP=""; [ "$S" = 0 ] || SP="--seed $S"
  [ -f "$RK/$TASK/ppo_seed$S/log.json" ] || run python 05_ppo_refine.py --task "$TASK" --data-dir "$DK" --run-dir "$RK" --max-action-shift 0 $SP
done
run python 06_eval.py --task "$TASK" --data-dir "$DK" --run-dir "$RK"
echo "done: $RK/$TASK/eval/results.md"
