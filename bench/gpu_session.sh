#!/usr/bin/env bash
# The GPU work of issue #14: one device call, then one step here. Prepared and tried on the CPU (TINY=1); see
# docs/RECIPES.md (GPU section) and docs/BENCHMARKS.md for what it produced.
#
#   bash ../shared/device/pack.sh --efficientnet          # here, once: .devkit/ (FER2013, wheels, scripts)
#   device call (<= 10 min): export T0=$(date +%s); bash .devkit/on_device.sh 'bash bench/gpu_session.sh device'
#                            carry [".devkit"], timeout_s 600
#                            (2nd session: 'BENCH=0 DEADLINE=575 RECIPES="fer2013_cnn_deep_gpu ..." bash bench/...')
#                            next session (prepared 2026-11-26 without a GPU, tried with TINY=1 on the CPU): the three
#                            candidates side by side, judged on val (docs/RECIPES.md, "Next GPU session"):
#                            'BENCH=0 DEADLINE=575 RECIPES="fer2013_cnn_deep_batchaug_gpu fer2013_cnn_deep_ema_gpu fer2013_resnet_gpu" bash bench/gpu_session.sh device'
#                            then, warm: 'BENCH_SIZES=128 COMPILE_MODE=reduce-overhead bash bench/gpu_session.sh bench compile'
#   here:                    bash bench/gpu_session.sh collect <the folder the files of the call came back to>
#
# device:  bench (BENCH=0: none), then recipes with the training time left before DEADLINE (seconds after T0,
#          default 570) as their time budget, then the compiled bench if time is left. Also $OUT/device.txt (the
#          GPU) and $OUT/gpu_util.csv (utilisation every 5 s).
# bench:   bench/train_speed.py on the GPU: Lightning vs a bare loop at batch 128 and 512 ($OUT/bench.txt);
#          `bench compile`: the same at 512 with model.compile=true; BENCH_SIZES="128" picks the batch sizes,
#          COMPILE_MODE=reduce-overhead the compile mode (CUDA graphs).
# profile: bench/profile_step.py at batch 128: host and GPU ms per step, synchronising calls ($OUT/profile*.txt).
# recipes: the fer2013_*_gpu recipes (or RECIPES="a b": those only) side by side on the one GPU (the kit's
#          parallel.sh; logger=csv, as MLflow is not installed there), each trained for BUDGET_MINUTES
#          (callbacks.time_budget; default: the recipes' 8); back in $OUT: runs.tgz (logs, per-epoch metrics,
#          results, configs) and the slimmed best checkpoints.
# collect: joins the checkpoints into outputs/gpu/<recipe>.ckpt, scores each on publictest, predicts the
#          challenge's images_test into submissions/<recipe>.csv, then the same for the fer2013_ensemble_gpu
#          recipe. Never trains, selects or calibrates on images_test.
# TINY=1 runs every step with a few batches on the CPU (a dry run of the scripts, not a measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?device, bench, profile, recipes or collect}
tiny=${TINY:-0}
# RECIPES: recipe names only (no overrides); the ones not trained keep their checkpoints in outputs/gpu/
all_recipes="fer2013_cnn_deep_gpu fer2013_cnn_deeper_gpu fer2013_efficientnet_gpu fer2013_cnn_gpu"
read -r -a recipes <<< "${RECIPES:-$all_recipes}"
py=${PYTHON:-python3}
case $step in
  bench)
    : "${OUT:?run on the device machine (or set OUT)}"
    if [ "$tiny" = 1 ]; then
      args=(--device cpu --data synthetic --batches 3 --epochs 1 --warmup-epochs 0); sizes=(32)
    else
      args=(--device cuda); sizes=(128 512)
    fi
    if [ "${2:-}" = compile ]; then args+=(--compile); sizes=("${sizes[-1]}"); fi
    # COMPILE_MODE=reduce-overhead: torch.compile with CUDA graphs (never measured yet; the step is launch-bound)
    [ -n "${COMPILE_MODE:-}" ] && args+=(--override "model.compile_mode=$COMPILE_MODE")
    [ -n "${BENCH_SIZES:-}" ] && read -r -a sizes <<< "$BENCH_SIZES"
    for bs in "${sizes[@]}"; do
      $py bench/train_speed.py "${args[@]}" --batch-size "$bs" 2>&1 | grep -E "^(device|cnn_deep)" | tee -a "$OUT/bench.txt"
    done
    ;;
  profile)  # where a step's time goes at batch 128 (the profiler and the host synchronisations; bench/profile_step.py)
    : "${OUT:?run on the device machine (or set OUT)}"
    if [ "$tiny" = 1 ]; then pargs=(--device cpu --data synthetic --batch-size 16 --warmup 2 --steps 3)
    else pargs=(--device cuda --batch-size 128); fi
    $py bench/profile_step.py "${pargs[@]}" --out "$OUT" 2>&1 | grep -vE "Warning|warn\(|^USDT|it/s" | tee "$OUT/profile.txt"
    ;;
  device)
    : "${OUT:?run on the device machine (or set OUT)}"
    t0=${T0:-$(date +%s)}; deadline=${DEADLINE:-570}
    elapsed() { echo $(( $(date +%s) - t0 )); }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/device.txt" 2>&1 || true
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_util.csv" 2>&1 &
    smi=$!
    if [ "${BENCH:-1}" = 1 ]; then echo "bench from $(elapsed) s"; bash "$0" bench; fi
    # what is left for training: the recipes also need start-up, calibration, the test and the packing (2026-11-26
    # on an H100: ~50 s in all, and the call ended 150 s early with this 150 s reserve; 100 s would have done)
    left=$(( deadline - $(elapsed) ))
    budget=$(awk -v s=$((left - ${RESERVE:-100})) 'BEGIN { m = s / 60; if (m < 0.5) m = 0.5; printf "%.2f", m }')
    echo "recipes from $(elapsed) s, $budget min of training each"
    BUDGET_MINUTES=$budget RUN_TIMEOUT=$(( left - 25 )) bash "$0" recipes
    left=$(( deadline - $(elapsed) ))
    if [ "${BENCH:-1}" = 1 ] && [ "$left" -gt 120 ]; then
      echo "compiled bench from $(elapsed) s"; timeout $(( left - 15 )) bash "$0" bench compile || true
    elif [ "${BENCH:-1}" = 1 ]; then echo "no time left for the compiled bench ($left s)" | tee -a "$OUT/bench.txt"; fi
    kill $smi 2>/dev/null || true
    echo "done at $(elapsed) s"
    ;;
  recipes)
    : "${OUT:?run on the device machine (or set OUT)}"
    extra=""
    [ "$tiny" = 1 ] && extra="trainer.accelerator=cpu trainer.max_epochs=1 +trainer.limit_train_batches=2 +trainer.limit_val_batches=1 +trainer.limit_test_batches=1"
    runs=()
    for r in "${recipes[@]}"; do
      more=$extra; [ "$tiny" = 1 ] && [[ $r == *efficientnet* ]] && more="$more model.net.input_size=64"
      [ -n "${BUDGET_MINUTES:-}" ] && more="$more callbacks.time_budget.minutes=$BUDGET_MINUTES"
      runs+=("experiment=$r trainer.enable_progress_bar=false data.progress=false $more")
    done
    # logger=csv: every epoch's metrics come back in runs.tgz (MLflow is not installed on the device)
    BASE_ARGS=${BASE_ARGS:-"trainer=gpu data.root=$FER_DATA logger=csv"} STAGGER=${STAGGER:-5} \
      RUN_TIMEOUT=${RUN_TIMEOUT:-600} bash .devkit/parallel.sh "${runs[@]}"
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
        output="outputs/gpu/$recipe.publictest.csv" progress=false 2>&1 | tee -a outputs/gpu/collect.log | grep -E "accuracy|predicted"
      echo "=== $recipe: submission"
      $py predict.py ckpt="outputs/gpu/$recipe.ckpt" data=challenge data.root="$challenge" tta=true \
        output="submissions/$recipe.csv" overwrite=true progress=false 2>&1 | tee -a outputs/gpu/collect.log | grep -E "wrote|predicted"
    done < outputs/gpu/runs/index.txt
    echo "=== fer2013_ensemble_gpu: publictest"
    $py predict.py experiment=fer2013_ensemble_gpu data.root="$root" progress=false 2>&1 | tee -a outputs/gpu/collect.log | grep -E "accuracy|weights"
    echo "=== fer2013_ensemble_gpu: submission"  # weights fitted on FER2013's val split, images from images_test
    $py predict.py experiment=fer2013_ensemble_gpu data.root="$root" input="$challenge/images_test" \
      columns="[$(head -1 "$challenge/challengeA_train.csv" | tr -d '\r')]" output=submissions/fer2013_ensemble_gpu.csv \
      overwrite=true progress=false 2>&1 | tee -a outputs/gpu/collect.log | grep -E "wrote|weights"
    ;;
  *) echo "unknown step $step: device, bench, profile, recipes or collect" >&2; exit 2;;
esac
