#!/usr/bin/env bash
# World-model training throughput, one configuration at a time on the same machine: one process
# against N under torchrun (DDP), fp32 against bf16 autocast, torch.compile off and on.
#
# Each configuration trains a fresh model on the main command's data for STEPS steps into its own
# folder under OUT and reads samples/s (all processes together, after the first 10 steps) from the
# fidelity report that 02 writes. One process uses all the machine's threads; under torchrun each
# process gets one thread per core it owns (torchrun's OMP_NUM_THREADS), so both use the whole machine.
#
#   bash benchmarks/wm_throughput.sh                               # CPU: 1 vs 2 processes, fp32/bf16, compile
#   DEVICE=cuda BATCH=128 CHANNELS="32 64 64 64" CONFIGS="1:fp32:0 1:bf16:0 1:fp32:1" bash benchmarks/wm_throughput.sh  # one GPU
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/cpu}; TASK=${TASK:-button-press}; OUT=${OUT:-runs/wm_throughput}
STEPS=${STEPS:-60}; DEVICE=${DEVICE:-cpu}; BATCH=${BATCH:-32}; CHANNELS=${CHANNELS:-"16 32 64 64"}
CONFIGS=${CONFIGS:-"1:fp32:0 1:bf16:0 2:fp32:0 2:bf16:0 1:bf16:1"}  # processes:precision:compile
CORES=$(python -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())")
[ -f "$DATA/meta.json" ] || { echo "error: no data at $DATA; run 01_collect.py first (or set DATA=)" >&2; exit 2; }
mkdir -p "$OUT"
for C in $CONFIGS; do
  IFS=: read -r N PREC COMP <<< "$C"
  NAME="p${N}_${PREC}_compile${COMP}"; CF=""; [ "$COMP" = 1 ] && CF="--compile"
  ARGS=(--tasks "$TASK" --data-dir "$DATA" --run-dir "$OUT/$NAME" --steps "$STEPS" --batch-size "$BATCH" --channels $CHANNELS
        --precision "$PREC" --device "$DEVICE" --eval-horizon 1 --ckpt-every 100000 $CF)
  rm -rf "${OUT:?}/$NAME"
  echo "+ $NAME"
  if [ "$N" = 1 ]; then
    python 02_world_model.py "${ARGS[@]}" > "$OUT/$NAME.log" 2>&1
  else
    OMP_NUM_THREADS=$(( CORES / N > 0 ? CORES / N : 1 )) \
      torchrun --standalone --nproc_per_node "$N" 02_world_model.py "${ARGS[@]}" > "$OUT/$NAME.log" 2>&1
  fi
done
python - "$OUT" $CONFIGS <<'EOF'
import json, sys
from pathlib import Path
out, configs = Path(sys.argv[1]), sys.argv[2:]
print("| processes | precision | compile | samples/s (after 10 steps) | samples/s (all steps) | loss first -> last |")
print("| --- | --- | --- | --- | --- | --- |")
for c in configs:
    n, prec, comp = c.split(":")
    r = json.loads((out / f"p{n}_{prec}_compile{comp}" / "world_model_eval" / "world_model_fidelity.json").read_text())
    print(f"| {n} | {prec} | {'on' if comp == '1' else 'off'} | {r['samples_per_s_after_10_steps']:.0f} | "
          f"{r['samples_per_s']:.0f} | {r['train_loss_first']:.3f} -> {r['train_loss_last']:.3f} |")
EOF
