"""Entry module for the dramatiq CLI (`loyalty worker` runs it through worker/stopping.py)."""

import os

from worker import logs
from worker.broker import build_broker, name_worker
from worker.config import Settings

logs.configure()
# `loyalty worker` sets the multiprocess directory (shared by all worker processes) unless
# metrics are turned off with LOYALTY_METRICS_PORT=0.
broker = build_broker(Settings.from_env(), metrics=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))
name_worker(broker)
