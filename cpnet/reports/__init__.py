"""The supplement's analyses as data and figures: per-class gains (``compare``), run time against batch size
(``runtime``), CP vs non-local training memory (``memory``), where inference time goes (``profile``) and
correspondence proposals with their channel wins (``visualize``; every CP module of a clip, and the page that
explores them, in ``explorer``). Each module turns measurements into rows (lists of dicts) and draws figures from
those rows; ``cpnet.cli.bench``, ``compare`` and ``visualize`` write and print them.
"""
