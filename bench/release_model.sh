#!/usr/bin/env bash
# A finished training run -> the bundled model, the model card's figures and submissions/pretrained.csv, in the
# order of the release checklist (docs/DEVELOPMENT.md):
#   bash bench/release_model.sh RUN_FOLDER [DATA_ROOT] [IMAGES_TEST]
#     RUN_FOLDER   a train.py run folder (outputs/train/runs/...): its best checkpoint (checkpoints/epoch_*.ckpt)
#     DATA_ROOT    FER2013 folders (default ../shared/fer2013): the val split checks the export, publictest measures
#     IMAGES_TEST  folder to predict for the submission (default ../shared/challengeA/images_test; prediction only)
# 1. export.py: fp32, int8 and fp16-weight files with the six test-time views in the graph (outputs/pretrained/)
# 2. bench/model_card.py on all three: MODEL_CARD.md's figures (docs/img/ plots) and the form to ship: the smallest
#    whose publictest accuracy is within 0.3 points of fp32's
# 3. that file becomes fer/runtime/models/fer2013_expression.onnx
# 4. the wheel is built and installed in a fresh venv (no torch); from a folder outside the checkout, its
#    fer-classify writes submissions/pretrained.csv for IMAGES_TEST with the default call, in the challenge's
#    format (image,label with labels 0-6, as challengeA_train.csv and the other submissions)
# Then edit docs/MODEL_CARD.md with the printed figures (outputs/pretrained/model_card.txt) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: bash bench/release_model.sh RUN_FOLDER [DATA_ROOT] [IMAGES_TEST]}
root=${2:-../shared/fer2013}
images_test=${3:-../shared/challengeA/images_test}
out=outputs/pretrained
shipped=fer/runtime/models/fer2013_expression.onnx

ckpts=("$run"/checkpoints/epoch_*.ckpt)
[ -f "${ckpts[0]}" ] && [ ${#ckpts[@]} -eq 1 ] || { echo "error: expected one best checkpoint in $run/checkpoints" >&2; exit 2; }
ckpt=${ckpts[0]}
mkdir -p "$out"

echo "=== export $ckpt $(date +%T)"
.venv/bin/python export.py ckpt="$ckpt" data=fer2013 data.root="$root" views=flip_shifts quantize=[int8,fp16] \
  output="$out/fer2013_expression.onnx" overwrite=true progress=false

echo "=== model card figures $(date +%T)"
.venv/bin/python bench/model_card.py --fp32 "$out/fer2013_expression.onnx" --int8 "$out/fer2013_expression.int8.onnx" \
  --fp16 "$out/fer2013_expression.fp16.onnx" --ckpt "$ckpt" --data "$root" | tee "$out/model_card.txt"
form=$(sed -n 's/^form to ship (.*): \([a-z0-9]*\).*/\1/p' "$out/model_card.txt")
case $form in
  fp32) file="$out/fer2013_expression.onnx" ;;
  int8 | fp16) file="$out/fer2013_expression.$form.onnx" ;;
  *) echo "error: bench/model_card.py named no form to ship" >&2; exit 1 ;;
esac
[ "$(stat -c %s "$file")" -le 16000000 ] || { echo "error: $file is over 16 MB" >&2; exit 1; }
cp "$file" "$shipped"
echo "=== shipped $file ($form) as $shipped"

echo "=== submission through the installed runtime $(date +%T)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); from install_size import build_wheel; from pathlib import Path
print(build_wheel(Path(sys.argv[1])))" "$work" > "$work/wheel.txt"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$(cat "$work/wheel.txt")"
submission=$(realpath -m submissions/pretrained.csv)
images_test=$(realpath "$images_test")
mkdir -p "$work/elsewhere"
(cd "$work/elsewhere" && "$work/venv/bin/fer-classify" "$images_test" --labels index --no-probabilities \
  --output "$submission" --overwrite)
echo "=== done $(date +%T): $shipped, $submission, figures in $out/model_card.txt"
