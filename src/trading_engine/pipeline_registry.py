"""Project pipelines."""

import warnings

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Tuning is a study of its own: run it with `kedro run --pipelines tuning`.
DEFAULT_PIPELINES = ("ingestion", "features", "training", "evaluation")


def register_pipelines() -> dict[str, Pipeline]:
    try:
        pipelines = find_pipelines(raise_errors=True)
    except ImportError as error:
        if error.__cause__ is not None:
            raise  # a pipeline package failed to import: its own error, with its traceback
        # `--pipelines <a name with no package>` (e.g. evalution): Kedro raises this ImportError
        # only after every existing package imported, so leave the name out and let the session
        # say "Failed to find the pipeline named 'evalution'. Did you mean one of these instead?".
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipelines = find_pipelines(raise_errors=False)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in DEFAULT_PIPELINES if name in pipelines), Pipeline([])
    )
    return pipelines
