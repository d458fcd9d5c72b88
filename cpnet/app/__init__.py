"""The application: a config file turned into datasets, a model and a run folder, then the engine's calls.

- ``config``: the typed experiment schema, YAML loading with ``--set`` overrides.
- ``runfolder.RunFolder``: every file name of a run folder; starting, resuming, replacing and locking a run.
- ``datasets``: the config's data section made real (synthetic set, splits, datasets, loaders).
- ``runs``: ``train_run``, ``eval_run``, ``load_trained``: a config (and checkpoint) to engine calls.
- ``predict``: one file classified, and the clip loader the visualisation shares.
- ``demo``: the main job, four models on the synthetic motion set.

Below this layer nothing sees a whole config: the engine takes models and loaders, the data layer explicit
arguments, the reports data. The CLI (``cpnet.cli``) parses arguments and calls this layer.
"""
