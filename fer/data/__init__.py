"""Data pipeline: source readers -> memory-mapped cache -> DataModule."""
