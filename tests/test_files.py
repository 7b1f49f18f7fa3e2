"""Every file is written atomically (clusterprior.files): a writer killed in mid-write leaves
the old file or the new one, never a torn or empty one, and two writers at once leave one
whole file."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from clusterprior.files import atomic_path, save_figure, write_csv, write_text

SIZE = 4_000_000  # large enough that a write takes a while: the kill lands in its middle

WRITER = textwrap.dedent(
    """
    import sys
    from clusterprior.files import write_text
    path, letters, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(rounds):
        write_text(path, letters[i % len(letters)] * {size})
    """
).format(size=SIZE)


def writer(path: Path, letters: str, rounds: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), letters, str(rounds)])


def whole(path: Path, letters: str) -> bool:
    text = path.read_text()
    return len(text) == SIZE and text[0] in letters and text == text[0] * SIZE


def test_a_writer_killed_mid_write_leaves_the_old_file_or_the_new_one(tmp_path: Path):
    path = tmp_path / "out.txt"
    write_text(path, "o" * SIZE)  # the old file
    found = set()
    for delay in (0.3, 0.45, 0.6, 0.75, 0.9):  # the interpreter's start, then somewhere in the writes
        process = writer(path, "ab", 1000)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert whole(path, "oab"), f"killed after {delay} s: a torn or empty file"
        found.add(path.open().read(1))
    assert found & {"a", "b"}, "some kill came after a new file was in place: the writes did happen"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.txt"]
    assert all(name.startswith(".out.txt.") and name.endswith(".tmp") for name in leftovers), leftovers


def test_two_writers_at_once_leave_one_whole_file(tmp_path: Path):
    path = tmp_path / "out.txt"
    first, second = writer(path, "a", 15), writer(path, "b", 15)
    reads = 0
    while first.poll() is None or second.poll() is None:
        if path.exists():
            assert whole(path, "ab"), "a reader saw a torn file"
            reads += 1
        time.sleep(0.01)
    assert first.returncode == 0 and second.returncode == 0, "neither writer tripped over the other's temporary file"
    assert whole(path, "ab") and reads > 0
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "no temporary file left"


def test_the_helpers_write_whole_files_with_a_new_file_s_mode(tmp_path: Path):
    import pandas as pd
    from matplotlib.figure import Figure

    write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}), index=False)
    assert (tmp_path / "t.csv").read_text() == "a\n1\n2\n"
    fig = Figure()
    fig.subplots().plot([0, 1])
    save_figure(tmp_path / "f.png", fig, dpi=20)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "t.csv").stat().st_mode) == 0o666 & ~umask, "not mkstemp's private 0600"
    try:
        with atomic_path(tmp_path / "t.csv") as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer fails")
    except RuntimeError:
        pass
    assert (tmp_path / "t.csv").read_text() == "a\n1\n2\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "f.png",
        "t.csv",
    ]


def test_the_study_package_imports_without_fcntl():
    code = "import sys; sys.modules['fcntl'] = None; import clusterprior.study; from clusterprior import study"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
