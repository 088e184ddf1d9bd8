"""``skcicm report`` refuses incomplete, out-of-range or malformed results, naming file and row."""

import csv
import json
import shutil

import pytest

from skcicm.cli import main
from skcicm.evaluation.reporting import check_results, read_rows


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_clip_name):
    out = tmp_path_factory.mktemp("runs")
    argv = ["evaluate", "--model", tiny_clip_name, "--n-per-cell", "2", "--seeds", "0,1"]
    argv += ["--domains", "photo,sketch,painting", "--lam", "0,1", "--n-components", "4,8"]
    argv += ["--protocol", "domain-shift"]
    assert main([*argv, "--output-dir", str(out), "--progress", "off", "--no-plots"]) == 0
    return out / "toyworld-domain-shift"


@pytest.fixture
def run_dir(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def _report(run_dir, capsys):
    capsys.readouterr()
    status = main(["report", "--no-plots", str(run_dir)])
    return status, capsys.readouterr().err


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def test_a_complete_run_reports(run_dir, capsys):
    assert _report(run_dir, capsys)[0] == 0


def test_results_cut_in_half_are_refused(run_dir, capsys):
    lines = _lines(run_dir / "results.csv")
    (run_dir / "results.csv").write_text("".join(lines[: len(lines) // 2]))
    status, err = _report(run_dir, capsys)
    assert status == 1
    assert "results.csv is incomplete" in err and "has no rows for" in err
    # Without run.json too: the remaining rows do not cover every seed and target alike.
    (run_dir / "run.json").unlink()
    status, err = _report(run_dir, capsys)
    assert status == 1 and "is incomplete" in err


def test_a_row_cut_mid_line_is_named(run_dir, capsys):
    for name in ("results.csv", "sweep.csv"):
        original = (run_dir / name).read_text()
        (run_dir / name).write_text(original[: len(original) // 2 + 7])
        status, err = _report(run_dir, capsys)
        assert status == 1
        assert f"{name}, line" in err and "fewer cells" in err
        (run_dir / name).write_text(original)


@pytest.mark.parametrize("bad", ["9475.0", "inf", "-0.1", "high"])
def test_accuracies_out_of_range_are_named_by_row(run_dir, capsys, bad):
    with open(run_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[2]["accuracy"] = bad
    with open(run_dir / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    status, err = _report(run_dir, capsys)
    assert status == 1
    assert "results.csv, row 3: accuracy is" in err and "between 0 and 1" in err


def test_a_byte_order_mark_is_read(run_dir, capsys):
    status, _ = _report(run_dir, capsys)
    table = (run_dir / "table.md").read_text()
    for name in ("results.csv", "sweep.csv"):
        path = run_dir / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_rows(run_dir / "results.csv")[0]["dataset"] == "toyworld"
    assert _report(run_dir, capsys)[0] == 0
    assert (run_dir / "table.md").read_text() == table


def test_missing_columns_are_named(run_dir, capsys):
    for name, column in (("results.csv", "seed"), ("sweep.csv", "lam")):
        original = (run_dir / name).read_text()
        with open(run_dir / name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        with open(run_dir / name, "w", newline="") as handle:
            fields = [f for f in rows[0] if f != column]
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        status, err = _report(run_dir, capsys)
        assert status == 1 and f"{name} lacks the column(s) ['{column}']" in err
        (run_dir / name).write_text(original)


def test_a_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\n{"a": 2\n')
    with pytest.raises(ValueError, match=r"results.jsonl, line 2: not a JSON object"):
        read_rows(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"results.jsonl, line 2: not a JSON object"):
        read_rows(path)


def test_check_results_against_the_run_settings(run_dir):
    rows = read_rows(run_dir / "results.csv")
    settings = json.loads((run_dir / "run.json").read_text())["settings"]
    check_results(rows, "results.csv", settings)
    with pytest.raises(ValueError, match=r"has no rows for seeds \[2\]"):
        check_results(rows, "results.csv", {**settings, "seeds": [0, 1, 2]})
    with pytest.raises(ValueError, match=r"methods \['icm_zero_shot'\] of the run have no rows"):
        check_results([r for r in rows if r["method"] != "icm_zero_shot"], "r.csv", settings)
    with pytest.raises(ValueError, match=r"has no rows for targets \['photo'\]"):
        check_results(
            [r for r in rows if r["target"] != "photo"],
            "r.csv",
            {**settings, "targets": ["photo", "sketch", "painting"]},
        )
