#!/usr/bin/env bash
# End-to-end pipeline: scripted-expert demos recorded as rosbags through the ROS nodes ->
# dataset -> training on the CPU -> closed-loop evaluation through the ROS nodes on new seeds
# -> offline check on held-out bags -> report. `make pipeline` runs it; each stage is an
# ordinary command (printed before it runs) that can be run on its own.
#
# Environment (defaults in brackets):
#   TASK [transfer_cube]   EPISODES [100]   EVAL_SEEDS [1000:1050]   WORK [artifacts/pipeline]
#   POLICIES ["visuomotor_dit_flow"]: the camera-only recipe; the privileged-state ones are
#            lowdim_dit_flow and lowdim_unet_ddpm  (config names under
#            src/action_diffusion_policy/config/e2e_<name>.yaml)
#   STRATEGIES ["temporal_ensembling receding_horizon"]   RESULTS [results]
#   STAGES ["collect dataset train evaluate offline report"]  (a subset re-runs just those)
#   TRAIN_STEPS [the config's]  (e.g. a short CPU run of the visuomotor recipe)
#   CAMERAS [cam_high]  (comma-separated sim cameras recorded by the collect stage)
set -euo pipefail
cd "$(dirname "$0")/.."

TASK=${TASK:-transfer_cube}
EPISODES=${EPISODES:-100}
EVAL_SEEDS=${EVAL_SEEDS:-1000:1050}
WORK=${WORK:-artifacts/pipeline}
POLICIES=${POLICIES:-visuomotor_dit_flow}
STRATEGIES=${STRATEGIES:-temporal_ensembling receding_horizon}
RESULTS=${RESULTS:-results}
STAGES=${STAGES:-collect dataset train evaluate offline report}
CAMERAS=${CAMERAS:-cam_high}
CONFIGS=src/action_diffusion_policy/config

BAGS=$WORK/bags/$TASK
HELDOUT=$WORK/bags/${TASK}_heldout
DATASET=$WORK/datasets/$TASK
mkdir -p "$WORK" "$RESULTS"
TIMING=$WORK/timing_$TASK.jsonl

want() { [[ " $STAGES " == *" $1 "* ]]; }
run() {  # run NAME CMD...: print the command, run it, append its wall time to $TIMING
  local name=$1
  shift
  echo "[pipeline] $name: $*"
  local t0
  t0=$(date +%s.%N)
  "$@"
  python - "$TIMING" "$name" "$t0" <<'EOF'
import json, sys, time
path, name, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(path, "a") as f:
    f.write(json.dumps({"stage": name, "wall_s": round(time.time() - t0, 1)}) + "\n")
EOF
}

if want collect; then
  run collect python -m action_diffusion_bringup.collect --task "$TASK" --episodes "$EPISODES" \
    --seed 0 --bag-dir "$BAGS" --cameras "$CAMERAS" --real-time-factor 2 --force
  # A few held-out demonstrations (seeds the training never sees) for the offline check.
  run collect_heldout python -m action_diffusion_bringup.collect --task "$TASK" --episodes 3 \
    --seed 900 --bag-dir "$HELDOUT" --cameras "$CAMERAS" --force
fi

if want dataset; then
  run dataset python -m action_diffusion_policy.data.build_dataset "$BAGS" -o "$DATASET" \
    --image-size 96 128 --only-success --force
fi

for policy in $POLICIES; do
  run_dir=$WORK/runs/${TASK}_$policy
  if want train; then
    run "train_$policy" python -m action_diffusion_policy.training.train \
      --config "$CONFIGS/e2e_$policy.yaml" --dataset "$DATASET" --output "$run_dir" \
      ${TRAIN_STEPS:+--steps "$TRAIN_STEPS"}
  fi
  ckpt=$run_dir/checkpoints/last
  if want evaluate; then
    for strategy in $STRATEGIES; do
      run "evaluate_${policy}_$strategy" python -m action_diffusion_bringup.evaluate \
        --checkpoint "$ckpt" --task "$TASK" --seeds "$EVAL_SEEDS" --strategy "$strategy" \
        --out "$RESULTS/eval_${TASK}_${policy}_$strategy.json"
    done
  fi
  if want offline; then
    run "offline_$policy" python -m action_diffusion_policy.evaluation.offline \
      --checkpoint "$ckpt" --bag "$HELDOUT" --stride 10 --out "$RESULTS/offline_${TASK}_$policy"
  fi
done

if want report; then
  run report python -m action_diffusion_bringup.report "$RESULTS"/eval_*.json \
    "$RESULTS"/offline_*/report.json --out "$RESULTS"
fi
