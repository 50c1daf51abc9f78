#!/usr/bin/env bash
# Train the FER2013 recipes one after the other (conf/experiment/fer2013_<model>.yaml; MLflow experiment
# "fer2013-recipes"), then score the ensemble recipe on publictest. Each run logs test/acc and test_tta/acc.
#   bash bench/fer2013_recipes.sh [DATA_ROOT] [recipe ...]      # default: all five models, then the ensemble
# Results table: python bench/results_table.py fer2013-recipes
# All of them: about 2.5 h on the 2-core CPU (fit times svm 1, mlp 8, cnn 38, cnn_deep 46, efficientnet 53 min).
set -uo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/fer2013}
shift || true
recipes=("$@")
[ ${#recipes[@]} -eq 0 ] && recipes=(fer2013_svm fer2013_mlp fer2013_cnn fer2013_cnn_deep fer2013_efficientnet fer2013_ensemble)
for recipe in "${recipes[@]}"; do
  echo "=== $recipe $(date +%T)"
  if [ "$recipe" = fer2013_ensemble ]; then
    .venv/bin/python predict.py experiment=$recipe data.root="$root" progress=false 2>&1 | grep -vE "Warning|warn\("
  else
    .venv/bin/python train.py experiment=$recipe data.root="$root" callbacks.progress_bar=null \
      trainer.enable_progress_bar=false data.progress=false 2>&1 | grep -vE "Warning|warn\(" | tail -25
  fi
done
echo "=== done $(date +%T)"
