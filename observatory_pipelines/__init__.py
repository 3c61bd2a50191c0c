"""observatory_pipelines: Dagster pipelines for a public-discourse research observatory."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("observatory-pipelines")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
