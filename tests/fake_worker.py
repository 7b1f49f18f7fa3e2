"""A stand-in for the study worker, importable by spawned processes (executor tests)."""

import os
import time


def fake_execute(config: dict, folder: str, device: str, threads: int) -> dict:
    if config.get("crash"):
        os._exit(1)  # the process dies, as when it is killed or runs out of memory
    time.sleep(config.get("sleep", 0.2))
    return {"status": "done", "history": [], "measures": [], "seconds": 0.0}
