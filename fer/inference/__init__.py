"""What every flow that runs a trained model shares (predict.py, export.py, calibration after training): finding a
checkpoint by path, run folder, MLflow run or name (resolve), and batched inference over a uint8 image array
(engine). Beneath the entry flows, so that none of them imports another."""
