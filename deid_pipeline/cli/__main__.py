"""``python -m deid_pipeline.cli``."""

from .main import main

main()
