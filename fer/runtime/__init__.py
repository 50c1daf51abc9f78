"""fer without the training stack: classify faces with the bundled model or an exported ONNX model (numpy,
OpenCV, onnxruntime only; importing it imports no torch, Lightning or Hydra).

    from fer.runtime import ExpressionModel
    model = ExpressionModel()                      # the bundled FER2013 model; or ExpressionModel("model.onnx")
    model.analyze("photo.jpg")                     # [Face(box, crop, label, probabilities)], left to right
    model.predict(faces)                           # face crops: uint8 [N,48,48] (or a list of images) -> ["happy", ...]
    model.predict_proba(faces)                     # [N,7] calibrated probabilities
    for row in classify_video(model, "clip.mp4"):  # or "camera:0": one row per face per sampled frame
        ...

The command line: fer-classify (fer.runtime.cli), also python -m fer.runtime.
"""

from fer.runtime.model import ExpressionModel, Face, Prediction

__all__ = ["ExpressionModel", "Face", "Prediction"]
