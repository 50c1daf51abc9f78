"""fer without the training stack: classify faces with an exported ONNX model (numpy, OpenCV, onnxruntime only;
importing it imports no torch, Lightning or Hydra).

    from fer.runtime import ExpressionModel
    model = ExpressionModel("model.onnx")          # from: python export.py ckpt=...
    model.predict(faces)                           # uint8 [N,48,48] (or a list of images) -> ["happy", ...]
    model.predict_proba(faces, tta=True)           # [N,7] calibrated probabilities
    model.classify_files(paths)                    # [Prediction(name, label, probabilities)]
    model.find_faces("photo.jpg")                  # [Face(box, crop, label, probabilities)], left to right
    for row in classify_video(model, "clip.mp4"):  # or "camera:0": one row per face per sampled frame
        ...
"""

from fer.runtime.model import ExpressionModel, Face, Prediction

__all__ = ["ExpressionModel", "Face", "Prediction"]
