"""The corpus in tests/broken/: each config is wrong in one way and must produce one exact message.

A case file ends with `# expect:` lines (the message `dltrain check` prints after "error: "; `{file}` is
the case's path, `{dir}` its folder) and may start with `# set:` lines (overrides) and a `# trust-code`
line (check with --trust-code: the mistake lies past the consent a config's code needs). Files starting
with `_` are bases that cases extend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dltrain.cli import app
from dltrain.load import load_config
from dltrain.errors import ConfigError

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(BROKEN.glob("[!_]*.yaml"))


def _read_case(path: Path) -> tuple[list[str], list[str], str]:
    lines = path.read_text().splitlines()
    overrides = [line.split(":", 1)[1].strip() for line in lines if line.startswith("# set:")]
    trust = ["--trust-code"] if "# trust-code" in lines else []
    expected = "\n".join(line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: "))
    rel = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    return overrides, trust, expected.replace("{file}", str(rel)).replace("{dir}", str(rel.parent))


@pytest.fixture(autouse=True)
def _from_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN.parent.parent)  # messages show paths as given: tests/broken/...


def test_the_corpus_is_large():
    assert len(CASES) >= 40
    assert all(_read_case(case)[-1] for case in CASES), "every case states its message"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_broken_config_gives_its_exact_message(path: Path):
    overrides, trust, expected = _read_case(path)
    args = ["check", str(path.relative_to(Path.cwd()))] + [a for o in overrides for a in ("--set", o)] + trust
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback, ever
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: {expected}\n"


def test_config_errors_are_found_before_tensorflow_is_imported():
    """Every case that fails in the config layer fails in a process that never imports TensorFlow."""
    script = f"""
import json, sys
sys.path.insert(0, {str(BROKEN.parent)!r})
from test_broken_corpus import CASES, _read_case
from dltrain.load import load_config
from dltrain.errors import ConfigError
found = {{}}
for path in CASES:
    overrides, _, expected = _read_case(path)
    try:
        load_config(path.relative_to(__import__('pathlib').Path.cwd()), overrides)
    except ConfigError as error:
        found[path.stem] = str(error) == expected
print(json.dumps({{"tensorflow": "tensorflow" in sys.modules, "found": found}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=BROKEN.parent.parent)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tensorflow"] is False
    assert len(report["found"]) >= 40, "most mistakes are caught before TensorFlow loads"
    assert all(report["found"].values()), [k for k, ok in report["found"].items() if not ok]
