"""Inference for `python predict.py`: checkpoint resolution (paths, MLflow runs, `best`), batched prediction
with optional test-time augmentation and ensembles, face detection for photos, and atomic CSV writing.

Modules (imported on demand so predict.py starts quickly):
  resolve     ckpt= spec -> local checkpoint file (path, run folder, MLflow run id, runs:/<id>, best)
  engine      device/precision choice, batched probabilities over a uint8 image array
  tta         test-time augmentation views (flip, shifted crops) as whole-batch tensor ops
  ensemble    several models averaged into one predict_proba
  faces       face detection in photos, 48x48 crops, annotated copies
  submission  CSV columns, names, atomic writing
  app         what predict.py runs
"""
