#!/usr/bin/env bash
# The GPU work of issue #14 in three steps: two device calls and one here. Prepared and tried on the CPU; see
# docs/RECIPES.md (GPU section) for what it produced.
#
#   bash ../shared/device/pack.sh --efficientnet          # here, once: .devkit/ (FER2013, wheels, scripts)
#   device call 1 (~3 min):  bash .devkit/on_device.sh 'bash bench/gpu_session.sh bench'       carry [".devkit"]
#   device call 2 (~8 min):  bash .devkit/on_device.sh 'bash bench/gpu_session.sh recipes'     carry [".devkit"]
#   here:                    bash bench/gpu_session.sh collect <the folder the files of call 2 came back to>
#
# bench:   bench/train_speed.py on the GPU: Lightning vs a bare loop at batch 128 and 512, and compiled at 512
#          ($OUT/bench.txt).
# recipes: the three fer2013_*_gpu recipes side by side on the one GPU (the kit's parallel.sh; logger=none, as
#          MLflow is not installed there); back in $OUT: runs.tgz (logs, results, configs) and the slimmed best
#          checkpoints.
# collect: joins the checkpoints into outputs/gpu/<recipe>.ckpt, scores each on publictest (with TTA), predicts
#          the challenge's images_test into submissions/<recipe>.csv, then the same for the fer2013_ensemble_gpu
#          recipe. Never trains, selects or calibrates on images_test.
# TINY=1 runs every step with a few batches on the CPU (a dry run of the scripts, not a measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?bench, recipes or collect}
tiny=${TINY:-0}
recipes=(fer2013_cnn_deep_gpu fer2013_efficientnet_gpu fer2013_cnn_gpu)
py=${PYTHON:-python3}
case $step in
  bench)
    : "${OUT:?run on the device machine (or set OUT)}"
    if [ "$tiny" = 1 ]; then
      args=(--device cpu --data synthetic --batches 3 --epochs 1 --warmup-epochs 0); sizes=(32); compile=()
    else
      args=(--device cuda); sizes=(128 512); compile=(--compile)
    fi
    for bs in "${sizes[@]}"; do
      $py bench/train_speed.py "${args[@]}" --batch-size "$bs" 2>&1 | grep -E "^(device|cnn_deep)" | tee -a "$OUT/bench.txt"
    done
    if [ ${#compile[@]} -gt 0 ]; then  # an if, not `[ ] &&`: a false test would be the script's exit status
      $py bench/train_speed.py "${args[@]}" --batch-size 512 "${compile[@]}" 2>&1 \
        | grep -E "^(device|cnn_deep)" | tee -a "$OUT/bench.txt"
    fi
    ;;
  recipes)
    : "${OUT:?run on the device machine (or set OUT)}"
    extra=""
    [ "$tiny" = 1 ] && extra="trainer.accelerator=cpu trainer.max_epochs=1 +trainer.limit_train_batches=2 +trainer.limit_val_batches=1 +trainer.limit_test_batches=1"
    runs=()
    for r in "${recipes[@]}"; do
      more=$extra; [ "$tiny" = 1 ] && [[ $r == *efficientnet* ]] && more="$more model.input_size=64"
      runs+=("experiment=$r trainer.enable_progress_bar=false data.progress=false $more")
    done
    RUN_TIMEOUT=${RUN_TIMEOUT:-450} bash .devkit/parallel.sh "${runs[@]}"
    ;;
  collect)
    back=${2:?the folder with runs.tgz and run<i>.slim.part<k>}
    root=${DATA_ROOT:-../shared/fer2013}; challenge=${CHALLENGE_ROOT:-../shared/challengeA}
    mkdir -p outputs/gpu/runs submissions
    tar -C outputs/gpu/runs -xzf "$back/runs.tgz"
    while read -r run spec; do
      run=${run%:}; recipe=$(echo "$spec" | sed -E 's/.*experiment=([a-z0-9_]+).*/\1/')
      parts=$(ls "$back/$run".slim.part* 2>/dev/null || true)
      [ -z "$parts" ] && { echo "$recipe: no checkpoint came back ($run)"; continue; }
      $py ../shared/device/slim_ckpt.py join $parts "outputs/gpu/$recipe.ckpt"
      echo "=== $recipe: publictest"
      $py predict.py ckpt="outputs/gpu/$recipe.ckpt" data=fer2013 data.root="$root" split=publictest tta=true \
        tta_shifts=true output="outputs/gpu/$recipe.publictest.csv" progress=false 2>&1 | grep -E "accuracy|predicted"
      echo "=== $recipe: submission"
      $py predict.py ckpt="outputs/gpu/$recipe.ckpt" data=challenge data.root="$challenge" tta=true \
        tta_shifts=true output="submissions/$recipe.csv" overwrite=true progress=false 2>&1 | grep -E "wrote|predicted"
    done < outputs/gpu/runs/index.txt
    echo "=== fer2013_ensemble_gpu: publictest"
    $py predict.py experiment=fer2013_ensemble_gpu data.root="$root" progress=false 2>&1 | grep -E "accuracy|weights"
    echo "=== fer2013_ensemble_gpu: submission"  # weights fitted on FER2013's val split, images from images_test
    $py predict.py experiment=fer2013_ensemble_gpu data.root="$root" input="$challenge/images_test" \
      columns="[$(head -1 "$challenge/challengeA_train.csv")]" output=submissions/fer2013_ensemble_gpu.csv \
      overwrite=true progress=false 2>&1 | grep -E "wrote|weights"
    ;;
  *) echo "unknown step $step: bench, recipes or collect" >&2; exit 2;;
esac
