"""PyTorch training: models, data, loops and checkpoints. Needs the `train` extra."""
