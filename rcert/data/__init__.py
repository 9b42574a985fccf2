"""Data specs and loaders: one spec string selects the data, :func:`load_data` builds it.

See ``docs/data.md`` for the spec grammar.
"""

from rcert.data.dataset import Dataset, check_limit, load_data
from rcert.data.specs import DATA_RANGE, DataSpec, default_eval_spec, parse_spec

__all__ = ["DATA_RANGE", "DataSpec", "Dataset", "check_limit", "default_eval_spec", "load_data",
           "parse_spec"]
