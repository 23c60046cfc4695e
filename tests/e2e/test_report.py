"""`freight report` as a user runs it, on a seeded store: table, --json, --csv, --plot."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from freight.store.db import open_database
from tests.conftest import run_cli
from tests.seed import seed_two_days

PRICING_TOML = """
[pricing]
input_price = 1.0
output_price = 2.0
batch_discount = 0.5
hardware_per_hour = 3.6
"""


@pytest.fixture
def seeded_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "freight.toml").write_text(PRICING_TOML)
    db = open_database(f"sqlite:///{(home / 'freight.db').resolve()}", home)
    seed_two_days(db)
    db.dispose()
    return home


def report(home: Path, *args: str) -> str:
    result = run_cli(
        "report", "--home", str(home), "--since", "2026-01-01", *args, env={"COLUMNS": "220"}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_report_json_has_rows_per_day_project_model_and_kind(seeded_home: Path) -> None:
    data = json.loads(report(seeded_home, "--json"))
    assert data["currency"] == "USD" and data["batch_discount"] == 0.5
    assert data["hardware_per_hour"] == 3.6
    keys = [(r["day"], r["project"], r["model"], r["kind"]) for r in data["rows"]]
    assert keys == [
        ("2026-01-01", "*", "m1", "realtime"),
        ("2026-01-01", "alpha", "m1", "batch"),
        ("2026-01-01", "beta", "m1", "batch"),
        ("2026-01-02", "beta", "m1", "batch"),
    ]
    alpha = data["rows"][1]
    assert alpha["num_requests"] == 3
    assert (alpha["input_tokens"], alpha["output_tokens"]) == (3000, 1500)
    assert (alpha["realtime_cost"], alpha["batch_cost"], alpha["savings"]) == (
        0.006,
        0.003,
        0.003,
    )
    assert alpha["tokens_per_second"] == 35.0
    assert alpha["utilization"] == pytest.approx(0.333333)
    assert alpha["measured_usd_per_mtok"] == 9.52381
    assert data["totals"]["realtime_cost"] == pytest.approx(0.006 + 0.008 + 0.003 + 0.01)
    assert data["totals"]["batch_cost"] == pytest.approx(0.003 + 0.004 + 0.0015)


def test_report_csv_has_a_header_and_the_same_rows(seeded_home: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(report(seeded_home, "--csv"))))
    assert len(rows) == 4
    beta = rows[2]
    assert (beta["project"], beta["kind"], beta["input_tokens"]) == ("beta", "batch", "4000")
    assert beta["batch_cost"] == "0.004" and beta["savings"] == "0.004"
    assert rows[0]["batch_cost"] == ""  # real-time work has no batch price


def test_report_table_shows_costs_savings_and_measured_price(seeded_home: Path) -> None:
    table = report(seeded_home)
    assert "Freight usage 2026-01-01" in table
    alpha = next(line for line in table.splitlines() if "alpha" in line)
    for cell in ("3,000", "1,500", "$0.006000", "$0.003000", "35.0", "33%", "$9.52"):
        assert cell in alpha, (cell, alpha)
    assert "batch discount 50%" in table and "hardware $3.6/h" in table
    total = next(line for line in table.splitlines() if line.strip("│ ").startswith("total"))
    assert "$0.027000" in total  # real-time equivalent of everything: 6 + 8 + 3 + 10 millis


def test_report_for_one_project(seeded_home: Path) -> None:
    data = json.loads(report(seeded_home, "--json", "--project", "beta"))
    assert {r["project"] for r in data["rows"]} == {"beta"}
    assert data["rows"][0]["measured_usd_per_mtok"] == 9.52381  # engine time over everyone


def test_report_plot_writes_a_png(seeded_home: Path, tmp_path: Path) -> None:
    png = tmp_path / "usage.png"
    report(seeded_home, "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_report_rejects_bad_arguments(seeded_home: Path) -> None:
    result = run_cli("report", "--home", str(seeded_home), "--since", "January")
    assert result.returncode == 2 and "YYYY-MM-DD" in result.stderr
    result = run_cli("report", "--home", str(seeded_home), "--json", "--csv")
    assert result.returncode == 2 and "one of --json and --csv" in result.stderr


def test_report_on_an_empty_store_says_so_in_every_format(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    open_database(f"sqlite:///{(home / 'freight.db').resolve()}", home).dispose()
    data = json.loads(run_cli("report", "--home", str(home), "--json", check=True).stdout)
    assert data["rows"] == [] and data["totals"]["num_requests"] == 0
    assert data["totals"]["batch_cost"] is None
    table = run_cli("report", "--home", str(home), env={"COLUMNS": "220"}, check=True).stdout
    assert "total" in table
