"""`cpnet train`: train one configured experiment into a run folder (or resume it).

Launched by torchrun (``torchrun --nproc_per_node N -m cpnet train …``) it trains with DistributedDataParallel over
all the launched processes; only rank 0 prints and writes the run folder.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model from a YAML config",
                              description="Train a model from a YAML experiment config into a run folder. "
                                          "Under torchrun it trains with DistributedDataParallel over all processes.")
    p.add_argument("--config", help="experiment YAML (optional with --resume: the run's own config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.1 (repeatable; values are YAML)")
    p.add_argument("--out", help="run folder (default: runs/<config name>)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint exactly")
    resume.add_argument("--force", action="store_true", help="replace the run files a previous run left in --out "
                        "(refused otherwise; other files there are kept)")
    p.add_argument("--init", help="initial weights: a cpnet checkpoint to fine-tune (trained or converted; a new "
                   "classifier when the class count differs) or ImageNet ResNet weights (torchvision state dict or "
                   "tensorpack npz) for the backbone")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cpnet.app.train import train_command

    train_command(args.config, args.overrides, args.out, resume=args.resume, force=args.force, init=args.init,
                  progress=False if args.no_progress else None)
    return 0
