"""The thesis's presets, in one place and one idiom (each a :class:`~clusterprior.registry.Registry`
of frozen entries, or a constant): what the experiments and the demo run.

- :mod:`~clusterprior.presets.tasks`: the tasks of Chapter 4 (``TASKS``), the settings of the
  layer-rotation studies on each (``STUDY_SETTINGS``), the task of Fig. 4.10's features,
  the exploration's grid and the thesis's Layca rates;
- :mod:`~clusterprior.presets.winner_take_most`: the settings of Chapter 3 (``SETTINGS``);
- ``demo.toml``: the demo study (``clusterprior demo``; ``examples/demo.toml`` links to it).

``examples/`` holds the user-facing specs: the Chapter 2 studies, and the experiments' specs
that name these presets (``[experiment] options = { task = "cpu" }``).
"""
