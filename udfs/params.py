"""The parameters of VMIS-kNN (Serenade's defaults), defined once for every command.

`VmisParams()` holds the defaults; `recommender.config.vmis_params()` reads the `vmis`
settings (FLASHREC_VMIS_*, then the settings file, then these defaults).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VmisParams:
    """What VMIS-kNN takes besides the index."""

    m: int = 500  # most recent sessions per item considered as candidates
    k: int = 500  # neighbour sessions scored per recommendation
    how_many: int = 21  # items recommended
    max_items_in_session: int = 2  # newest clicks of the session used (0: all)
    idf_weighting: float = 1.0  # factor on the items' idf (0: no idf)
