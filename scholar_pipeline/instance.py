"""The Dagster instance (DAGSTER_HOME) that the demo, `make materialize` and the UI share, prepared once.

    python -m scholar_pipeline.instance [DAGSTER_HOME]    # prints the prepared home

The default home is `dagster_home` under the pipeline home (`data/dagster_home`), the one
the demo's UI serves. Preparing copies the repo's dagster.yaml (run queue, telemetry) into
the home, unless the home has a dagster.yaml of its own (one this module did not write), and
creates the instance's storage in one process.

Why: Dagster's SQLite storage creates its schema on first use without a lock. Four runs
started at once on a fresh home each create the tables and stamp `alembic_version`; all
four fail, and the home keeps two version rows, so every later run fails too ("Version table
'alembic_version' has more than one head present"). Once the storage exists, concurrent
runs only read the version and are safe.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from filelock import FileLock

from scholar_pipeline.settings import PROJECT_ROOT, pipeline_home

REPO_DAGSTER_YAML = PROJECT_ROOT / "dagster.yaml"
CONFIG_HEADER = b"# A copy of the repo's dagster.yaml, rewritten by `python -m scholar_pipeline.instance`; edit that one.\n"


class BrokenInstanceError(RuntimeError):
    """The home's storage cannot be opened (typically left broken by concurrent first use)."""


def default_dagster_home() -> Path:
    """The instance the demo serves in the UI: `dagster_home` under the pipeline home."""
    return pipeline_home() / "dagster_home"


def prepare_instance(dagster_home: Path | str | None = None) -> Path:
    """Copy the repo's dagster.yaml into `dagster_home` and create the instance's storage; return the home.

    Safe to call from several processes at once (a file lock in the home serializes them) and
    on an existing home (the storage is opened, not recreated; run history is kept). A
    dagster.yaml that this function did not write is left alone, except in the demo's home.
    """
    import dagster as dg

    home = Path(dagster_home or default_dagster_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home / ".prepare.lock")):
        _install_config(home, replace_foreign=home == default_dagster_home())
        try:
            instance = dg.DagsterInstance.from_config(str(home))
        except Exception as error:
            raise BrokenInstanceError(
                f"cannot open the Dagster instance in {home}: {type(error).__name__}: {error}\n"
                f"If it says 'more than one head', the storage was broken by runs that created it concurrently: "
                f"delete {home / 'history'} and {home / 'schedules'} (this loses the run history) and prepare it again."
            ) from error
        instance.dispose()
    return home


def _install_config(home: Path, *, replace_foreign: bool) -> None:
    """Write the repo's dagster.yaml into the home atomically, so a process reading it never sees half a file."""
    config = CONFIG_HEADER + REPO_DAGSTER_YAML.read_bytes()
    target = home / "dagster.yaml"
    if target.exists():
        current = target.read_bytes()
        if current == config:
            return
        if not current.startswith(CONFIG_HEADER) and not replace_foreign:
            print(f"note: keeping {target} (not a copy of the repo's dagster.yaml)", file=sys.stderr)
            return
    fd, temporary = tempfile.mkstemp(dir=home, prefix=".dagster.yaml.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(config)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare a Dagster instance (dagster.yaml and storage) before any run uses it.")
    parser.add_argument("dagster_home", nargs="?", type=Path, help="default: dagster_home under the pipeline home (data/dagster_home)")
    args = parser.parse_args(argv)
    try:
        home = prepare_instance(args.dagster_home)
    except BrokenInstanceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
