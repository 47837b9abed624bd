"""The main process of `loyalty worker`: dramatiq's command line, run in this process so that
the run's prometheus_client folder (PROMETHEUS_MULTIPROC_DIR) is removed when it ends.

`python -m worker.master ARGS` takes the arguments of `python -m dramatiq ARGS`.
"""

from __future__ import annotations

import os
import shutil
import sys


def main(argv: list[str]) -> int:
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from worker.config import METRICS_STOPPED_MARKER

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    # dramatiq re-executes sys.argv when asked to reload (SIGHUP): this module again, so the
    # folder is still removed at the end.
    sys.argv = [sys.executable, "-m", "worker.master", *argv]
    try:
        code = dramatiq_main(make_argument_parser().parse_args(argv))
        if folder and os.path.exists(os.path.join(folder, METRICS_STOPPED_MARKER)):
            return 3
        return code
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
