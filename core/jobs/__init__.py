"""visloupe.core.jobs: dataset-scale runs of the core functions, in-process or on Ray Data.

- :func:`run` ``(job, data=..., model=..., explainers=..., out=..., engine="local" | "ray")``:
  ``attribution`` (:func:`visloupe.core.attribution.explain`), ``cose`` (COSE, Daroya, Sun,
  Maji, ICCV-W 2023), ``robustness`` (infidelity and max-sensitivity, Yeh et al., NeurIPS
  2019), ``embed`` (:func:`visloupe.core.profiling.embed` and ``profile_dataset``), ``sanity``
  (model-parameter randomisation, Adebayo et al., NeurIPS 2018). Each shard calls the same
  public functions a notebook calls; results are Parquet, one row per evaluated item with its
  ``row_id``, written per shard atomically under a manifest, so a rerun resumes and a finished
  job costs no model call. A row whose image cannot be read costs only itself: it is listed in
  the ``unreadable`` table (``row_id``, ``error``; ``embed``: its ``profile`` row says why).
- :func:`load_results` -> :class:`Results` (tables and manifest); :func:`decode_maps` for the
  stored saliency maps; :func:`row_seed` (per-image seeds, independent of the sharding).
- The ``visloupe`` command line (:mod:`.cli`): ``visloupe run JOB ...``, ``visloupe show DIR``.
"""

from .engines import ENGINES, init_ray
from .runner import run, visloupe_version
from .specs import DataSpec, ModelSpec
from .store import Results, decode_maps, load_results, shard_ranges
from .tasks import JOBS, JobDef, row_seed

__all__ = [
    "ENGINES",
    "JOBS",
    "DataSpec",
    "JobDef",
    "ModelSpec",
    "Results",
    "decode_maps",
    "init_ray",
    "load_results",
    "row_seed",
    "run",
    "shard_ranges",
    "visloupe_version",
]
