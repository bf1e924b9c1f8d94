"""fmnist-edge: Fashion-MNIST autoencoders from PyTorch training to ONNX Runtime on CPUs.

Importing the package is cheap: nothing heavy (torch, onnxruntime) is imported here.
"""

__version__ = "0.1.0"
