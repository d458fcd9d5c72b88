"""`cpnet eval`: multi-view evaluation of a run folder or a checkpoint, with a report folder.

Launched by torchrun it shares the views among the processes and gathers them (the same metrics as one process);
only rank 0 prints and writes the report.
"""

from __future__ import annotations

import argparse

from cpnet.app.config import PROTOCOLS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a trained run with test-time views",
                              description="Evaluate a run folder (or a checkpoint) with clips x crops views per "
                                          "video, softmax averaged per video.")
    src = p.add_mutually_exclusive_group(required=True)
    # --run-dir: torchrun's own parser refuses `--run` as an ambiguous abbreviation of its --run-path.
    src.add_argument("--run", "--run-dir", dest="run",
                     help="run folder written by `cpnet train` (uses its config and best checkpoint); "
                          "spell it --run-dir after torchrun")
    src.add_argument("--checkpoint", help="checkpoint file (uses its stored config unless --config is given)")
    p.add_argument("--config", help="experiment YAML (with --checkpoint): dataset and clip settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.root=/data/jester")
    p.add_argument("--split", help="split to evaluate (default: data.val_split)")
    p.add_argument("--protocol", choices=PROTOCOLS, help="named view protocol (default: eval.protocol)")
    p.add_argument("--clips", type=int, help="clips per video (overrides the protocol)")
    p.add_argument("--crops", type=int, help="crops per clip (overrides the protocol)")
    p.add_argument("--out", help="report folder (default: <run>/eval_<split>_<protocol>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cpnet.app.evaluate import eval_command

    eval_command(run=args.run, checkpoint=args.checkpoint, config=args.config, overrides=args.overrides,
                 split=args.split, protocol=args.protocol, clips=args.clips, crops=args.crops, out=args.out)
    return 0
