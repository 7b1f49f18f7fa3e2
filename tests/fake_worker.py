"""A stand-in for the study worker, importable by spawned processes (executor tests)."""

import os
import time
from pathlib import Path


def fake_execute(config: dict, storage: str, device: str, threads: int) -> dict:
    if config.get("crash"):
        os._exit(1)  # the process dies, as when it is killed or runs out of memory
    start = time.time()
    time.sleep(config.get("sleep", 0.2))
    if config.get("log"):  # when it ran: the tests read the overlap of the runs
        (Path(config["log"]) / config["id"]).write_text(f"{start} {time.time()}")
    return {"status": "done", "history": [], "measures": [], "seconds": 0.0}
