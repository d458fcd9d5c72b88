"""The application: what each command does, from a config (or a checkpoint) to datasets, a model, the engine's
calls and the files a user keeps. One module per use case, which the CLI calls once per command:

- ``train``, ``evaluate``, ``predict`` (and ``overlay``), ``export``, ``bench``, ``convert``, ``visualize``,
  ``compare``, ``models``, ``data``, ``demo``: the workflows, their policies and their messages;
- ``trained``: the one way from a config or a checkpoint to a model (build, load a trained one, initialise for
  fine-tuning, freeze);
- ``config``: the typed experiment schema, YAML loading with ``--set`` overrides;
- ``datasets``: the config's data section made real (synthetic set, splits, datasets, loaders);
- ``runfolder``: every file name of a run folder and what a training writes there; starting, resuming, replacing,
  locking; ``evalreport``: an evaluation's report files.

Below this layer nothing sees a whole config: the engine takes models and loaders and writes no file, the data layer
takes explicit arguments, the reports take data. The CLI (``cpnet.cli``) parses arguments and calls this layer.
"""
