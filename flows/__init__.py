"""Prefect flows composing the `pipeline` library. Orchestration only: no algorithm lives here.

Importing this package sets Prefect's defaults for running with no server (the ephemeral local
one, a 120 s startup timeout, analytics off) unless the environment already chose otherwise.
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
