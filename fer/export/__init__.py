"""`python export.py`: a trained checkpoint as an ONNX model that fer.runtime (and any ONNX runtime) can run:
uint8 faces in, calibrated probabilities out, its metadata saying what it is; checked against PyTorch on real
images before it is written, optionally quantised to int8."""
