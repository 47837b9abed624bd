"""Entry module for the dramatiq CLI (`loyalty worker` runs `dramatiq worker.main`)."""

from worker import logs
from worker.broker import build_broker
from worker.config import Settings

logs.configure()
broker = build_broker(Settings.from_env())
