"""ONNX export, int8 quantization and validation. Needs the train extra (torch, onnx)."""
