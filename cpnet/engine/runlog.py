"""Per-epoch records of a run: ``metrics.jsonl`` (one JSON object per line) and TensorBoard when installed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from cpnet.files import atomic_write_text

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"


class RunLog:
    """Appends one JSON line per epoch to ``out_dir/metrics.jsonl``; mirrors scalars to TensorBoard if available.

    ``keep_epochs`` drops lines of later epochs left by an interrupted run (they were written just before a crash
    that lost their checkpoint), so a resumed run never logs an epoch twice.
    """

    def __init__(self, out_dir: str | Path, keep_epochs: int = 0) -> None:
        self.path = Path(out_dir) / METRICS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in self.records() if r.get("epoch", 0) <= keep_epochs]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.tb = _tensorboard(self.path.parent / TENSORBOARD)

    def records(self) -> list[dict]:
        """The records written so far."""
        return read_records(self.path.parent)

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tb.add_scalar(key, value, record["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_records(out_dir: str | Path) -> list[dict]:
    """The records of ``out_dir/metrics.jsonl`` (none when it does not exist)."""
    path = Path(out_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(log_dir))
