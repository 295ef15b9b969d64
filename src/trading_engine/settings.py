"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

import warnings

import pyarrow as pa
from kedro.config import OmegaConfigLoader

from trading_engine.hooks import OutputLocationHooks, ParameterHooks, TrackingHooks

# Kedro 1.7's config loader calls OmegaConf.register_new_resolver(), which OmegaConf deprecates
# with a UserWarning on every session; it is Kedro's to change, not ours, so it is not shown.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

# Arrow's default allocator (mimalloc) keeps the freed Parquet decoding buffers for reuse: after
# reading five years of 1m model input, 1.2-2.8 GB more resident memory for the rest of the run.
# jemalloc with no decay delay returns them to the system at once (docs/benchmarks.md, "The seed's
# example at full size"). Platforms whose pyarrow lacks jemalloc keep the default.
try:
    pa.jemalloc_set_decay_ms(0)
    pa.set_memory_pool(pa.jemalloc_memory_pool())
except NotImplementedError:
    pass

# Parameters are checked before the first node runs; every run is tracked with MLflow; the end of
# every run logs where its outputs are (trading_engine/hooks.py).
HOOKS = (ParameterHooks(), TrackingHooks(), OutputLocationHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (binance, local) overrides single keys instead of whole files.
    "merge_strategy": {"parameters": "soft", "catalog": "soft", "globals": "soft", "tracking": "soft"},
    # conf/<env>/tracking.yml: where MLflow keeps the runs (trading_engine/tracking.py)
    "config_patterns": {"tracking": ["tracking*", "tracking*/**"]},
}
