"""The README's Python examples run as written (each in a fresh interpreter)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "README lost its Python examples"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_readme_block_runs(code: str, start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    prelude = f"import multiprocessing\nmultiprocessing.set_start_method({start_method!r}, force=True)\n"
    # The start method must be set in the main module before any Process starts.
    script.write_text(code.replace('if __name__ == "__main__":', f'if __name__ == "__main__":\n    {prelude.strip().replace(chr(10), chr(10) + "    ")}', 1))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr



def test_the_quickstart_runs_again_after_a_killed_run(tmp_path: Path) -> None:
    """A run killed half-way leaves what it made behind. If the Quickstart reopened fixed
    names, their leftover ``None`` sentinels would end the new run's workers early and it
    would wait for results for ever (as it did when it used ``Queue("tasks")``)."""
    import os
    import signal

    import shmq

    leftovers = [shmq.Queue(name, persistent=True) for name in ("tasks", "results")]
    leftovers[0].put_many([None, None])
    script = tmp_path / "quickstart.py"
    script.write_text(BLOCKS[0])
    p = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # its workers too
        p.communicate()
        raise AssertionError("the Quickstart hung: it reopened the leftover queues") from None
    finally:
        for q in leftovers:
            q.unlink()
            q.close()


def test_the_bad_input_table_has_a_row_per_test_in_order() -> None:
    # docs/errors.md ("Bad input and what it raises") names the test of each row.
    root = README.parent
    table = re.findall(r"`(test_\w+)`", (root / "docs" / "errors.md").read_text())
    rows = list(dict.fromkeys(table))
    tests = re.findall(r"^def (test_\w+)", (root / "tests" / "test_bad_inputs.py").read_text(), flags=re.M)
    assert rows == tests
    assert "docs/errors.md" in README.read_text()
