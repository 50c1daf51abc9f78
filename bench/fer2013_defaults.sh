#!/usr/bin/env bash
# Train every model (conf/model/*.yaml) on FER2013 with the default config (10% stratified val from train, publictest as
# test), one MLflow run each in experiment "fer2013-defaults". On a 2-core CPU the slow models are capped by
# wall time (Lightning's max_time) so the whole table fits in about an hour: MAX_TIME_<MODEL> overrides it.
#   bash bench/fer2013_defaults.sh [DATA_ROOT]
set -uo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/fer2013}
for model in $(ls conf/model/*.yaml | xargs -n1 basename | sed 's/.yaml$//' | grep -v "^_"); do
  var="MAX_TIME_${model^^}"
  limit=${!var:-}
  extra=()
  [ -n "$limit" ] && extra+=("+trainer.max_time=$limit")
  echo "=== $model ${limit:+(max_time $limit)} $(date +%T)"
  .venv/bin/python train.py model=$model data=fer2013 data.root="$root" experiment_name=fer2013-defaults \
    trainer.enable_progress_bar=false data.progress=false "${extra[@]}" 2>&1 | grep -vE "Warning|warn\(" | tail -25
done
