"""Studies: a TOML grid of runs, trained and measured by a resumable runner on a local
process pool or a Ray cluster, stored in SQLite. ``load(DIR).frame()`` reads one back."""

from clusterprior.study.remeasure import remeasure
from clusterprior.study.results import Study, load
from clusterprior.study.runner import run_study
from clusterprior.study.spec import StudySpec, expand, parse
from clusterprior.study.spec import load as load_spec

__all__ = ["Study", "StudySpec", "expand", "load", "load_spec", "parse", "remeasure", "run_study"]
