"""`python -m benchmarks.run FIGURE` runs one figure without the `bench` extra, and says what is missing for `peer`."""

from __future__ import annotations

import subprocess
import sys

from benchmarks import run


def test_a_figure_runs_without_the_peer_library_and_peer_says_how_to_get_it(monkeypatch, capsys, tmp_path):
    # Without scholar-flux (only `make benchmark` installs it), importing it fails as on a machine set up by `make demo`.
    monkeypatch.setitem(sys.modules, "scholar_flux", None)
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results.json")
    measured = []
    monkeypatch.setattr("benchmarks.normalization.run", lambda: measured.append("normalization") or [])
    assert run.main(["normalization", "peer"]) == 2
    error = capsys.readouterr().err
    assert "figure peer needs the module scholar_flux" in error and "make benchmark" in error
    assert measured == []  # nothing measured before the command knew it could not finish
    assert not (tmp_path / "results.json").exists()


def test_the_command_imports_no_figure_before_it_runs():
    probe = "import sys, benchmarks.run; print(sorted(m for m in sys.modules if m.startswith(('benchmarks.', 'scholar_flux'))))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "['benchmarks.run']"


def test_an_unknown_figure_is_refused_with_the_known_ones(capsys):
    assert run.main(["normalisation"]) == 2
    assert "choose from" in capsys.readouterr().err
