"""clusterprior: the natural clustering prior of deep networks, measured.

Subpackages follow the data flow ``data -> models -> train -> probe -> measures
-> stats -> report``; see the README for a tour.
"""

from clusterprior.errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]
