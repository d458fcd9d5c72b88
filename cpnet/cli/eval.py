"""`cpnet eval`: multi-view evaluation of a run folder or a checkpoint, with a report folder.

Launched by torchrun it shares the views among the processes and gathers them (the same metrics as one process);
only rank 0 prints and writes the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cpnet.app.config import PROTOCOLS, load_config


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
    from cpnet.app.runfolder import RunFolder
    from cpnet.app.runs import checkpoint_config, eval_run

    if args.run:
        run_folder = RunFolder(args.run)
        checkpoint = run_folder.checkpoint()
        cfg = load_config(args.config or run_folder.config, args.overrides)
    else:
        checkpoint = Path(args.checkpoint)
        cfg = load_config(args.config, args.overrides) if args.config else checkpoint_config(checkpoint, args.overrides)
    split = args.split or cfg.data.val_split
    protocol = args.protocol or cfg.eval.protocol
    out = Path(args.out) if args.out else RunFolder(checkpoint.parent).eval_dir(split, protocol)
    eval_run(cfg, checkpoint, out, split=split, protocol=protocol, clips=args.clips, crops=args.crops)
    return 0
