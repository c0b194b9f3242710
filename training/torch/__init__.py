"""The PyTorch backend: `backend.TorchBackend` (capability flags, no torch at import time) and the
modules its calls import on a worker: the loop, data, models, snapshots, export, compression,
several-device runs, precision, compile, augmentation, inspection and network building."""
