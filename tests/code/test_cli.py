"""The command line: fast help, one-line user errors with exit code 2, generate."""

import subprocess
import sys

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from flows.cli import app; "
            "heavy = [m for m in ('prefect', 'mlflow', 'lightgbm', 'pandas', 'duckdb', 'sklearn') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "generate", "ingest", "features", "train", "score", "report", "run", "demo"):
        assert command in result.output
    # A flag reads as a flag, not as an option that takes a value.
    init = runner.invoke(app, ["init", "--help"])
    assert "--force " in init.output and "<bool>" not in init.output and "EXPORT_DIR" in init.output


def test_missing_config_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["run", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "config file" in result.output and "not found" in result.output
    assert "Traceback" not in result.output


def test_an_error_with_brackets_is_shown_as_written(tmp_path):
    """Errors go through rich: "[train]" or "[team]" in a message must not be taken for markup and dropped."""
    result = runner.invoke(app, ["run", "--config", str(tmp_path / "[team] leads.toml")])
    assert result.exit_code == 2
    assert "[team] leads.toml" in result.output


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[data.leads]\npath = "x.csv"\nid = "ID"\n[label]\nwon_stages = ["Won"]\nhorizon_days = -3\n')
    result = runner.invoke(app, ["train", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "label.horizon_days" in result.output
    assert "Traceback" not in result.output
    cfg.write_text('[data.leads]\npath = "x.csv"\nid = "ID"\n[label]\nwon_stages = ["Won"]\n')
    result = runner.invoke(app, ["train", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "data.leads.created_at: is required" in result.output


def test_generate_writes_exports_and_a_config(tmp_path):
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "crm"), "--leads", "500", "--seed", "1",
                                 "--config-out", str(tmp_path / "leadscore.toml")])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "crm").iterdir()} == {
        "leads.csv", "activities.csv", "opportunities.csv", "campaigns.csv", "truth.csv"}
    assert "Lead ID" in (tmp_path / "leadscore.toml").read_text()
    assert sum(1 for _ in (tmp_path / "crm" / "leads.csv").open()) == 501


def test_a_missing_export_file_or_ingest_is_said_before_the_prefect_server_starts(tmp_path):
    runner.invoke(app, ["generate", "--out", str(tmp_path / "crm"), "--leads", "500", "--config-out",
                        str(tmp_path / "leadscore.toml")])
    (tmp_path / "crm" / "activities.csv").unlink()
    result = runner.invoke(app, ["run", "--config", str(tmp_path / "leadscore.toml"), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert f"data.activities.path: file {tmp_path / 'crm' / 'activities.csv'} not found" in result.output
    assert "Prefect server" not in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["score", "--config", str(tmp_path / "leadscore.toml"), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert "no ingested data" in result.output and "run `leadscore ingest --config FILE` first" in result.output
    assert "Prefect server" not in result.output


def test_history_shows_no_probability_as_certain_that_is_not():
    from flows.cli import _share

    assert [_share(p) for p in (0.999916, 0.00004, 0.5, 1.0, 0.0)] == ["0.9999", "0.0001", " 0.500", " 1.000", " 0.000"]
