#!/usr/bin/env bash
# Train the FER2013 recipes one after the other (conf/experiment/fer2013_<model>.yaml; MLflow experiment
# "fer2013-recipes"), then score the ensemble recipe on publictest. Each run logs test/acc and test_tta/acc.
#   bash bench/fer2013_recipes.sh [DATA_ROOT] [recipe ...]      # default: every conf/experiment/fer2013_*.yaml,
#                                                               # train.py recipes first, then predict.py ones
# Results table: python bench/results_table.py fer2013-recipes
# All of them: about 2.5 h on the 2-core CPU (fit times svm 1, mlp 8, cnn 38, cnn_deep 46, efficientnet 53 min).
set -uo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/fer2013}
shift || true
recipes=("$@")
if [ ${#recipes[@]} -eq 0 ]; then  # train recipes first: the predict recipes (ensembles) use their runs
  recipes=($(grep -L "^recipe_for: predict" conf/experiment/fer2013_*.yaml | xargs -n1 basename | sed 's/.yaml$//')
           $(grep -l "^recipe_for: predict" conf/experiment/fer2013_*.yaml | xargs -n1 basename | sed 's/.yaml$//'))
fi
for recipe in "${recipes[@]}"; do
  echo "=== $recipe $(date +%T)"
  if grep -q "^recipe_for: predict" "conf/experiment/$recipe.yaml"; then
    .venv/bin/python predict.py experiment=$recipe data.root="$root" progress=false 2>&1 | grep -vE "Warning|warn\("
  else
    .venv/bin/python train.py experiment=$recipe data.root="$root" \
      trainer.enable_progress_bar=false data.progress=false 2>&1 | grep -vE "Warning|warn\(" | tail -25
  fi
done
echo "=== done $(date +%T)"
