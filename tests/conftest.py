"""Suite-wide settings: one intra-op thread.

The suite's tensors are tiny; on a 2-core machine OpenMP hand-offs then dominate, and two threads measured up to
50× slower than one on small convs. Tests that need more threads set them themselves.
"""

from __future__ import annotations

import os

import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)
