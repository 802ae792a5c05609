"""Training CLI and loop for mixerkern's classifiers (``python -m mixerkern.train --help``)."""
from .cli import build_parser, main, parse_config
from .loop import RunConfig, evaluate, run

__all__ = ["RunConfig", "build_parser", "evaluate", "main", "parse_config", "run"]
