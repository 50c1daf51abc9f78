"""Inference for `python predict.py`: checkpoint resolution (paths, MLflow runs, `best`), batched prediction
with optional test-time augmentation and ensembles, face detection for photos, and atomic CSV writing.

Modules (imported on demand so predict.py starts quickly):
  app         what predict.py runs
  resolve     ckpt= spec -> local checkpoint file (path, run folder, MLflow run id, runs:/<id>, best)
  inputs      the images to predict: a data split, input= files, or the faces found in photos
  engine      device/precision choice, batched probabilities over a uint8 image array (TTA: fer.tta)
  ensemble    several models mixed into one predict_proba; mixture weights fitted on the val split
  faces       face detection in photos, 48x48 crops, annotated copies
  outputs     the CSV rows (images or faces) and the result (written by fer.runtime.table, shared with the runtime)
  summary     the lines printed at the end
"""
