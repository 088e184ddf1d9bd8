"""The ``skcicm`` command line, in a subprocess and in process."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _protocol_fixtures import write_image_folder

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.cli import build_parser, main
from skcicm.evaluation.options import DEFAULT_LAM, default_n_components
from skcicm.featurizer import registered_models, resolve_model_name

PACS_DOMAINS = "art_painting,photo,sketch"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root / "PACS", domains=PACS_DOMAINS.split(","), n_per_cell=4)
    return root


def _run(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "skcicm", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_both_protocols_in_a_subprocess(tmp_path, data_root, tiny_clip_name):
    common = [
        "--model",
        tiny_clip_name,
        "--lam",
        "0.1,1",
        "--n-components",
        "4,8",
        "--output-dir",
        str(tmp_path / "out"),
        "--progress",
        "off",
    ]
    shift = _run(
        "evaluate",
        "--dataset",
        "PACS",
        "--root",
        str(data_root),
        "--domains",
        PACS_DOMAINS,
        "--seeds",
        "0,1",
        *common,
        cwd=tmp_path,
    )
    assert shift.returncode == 0, shift.stderr
    assert "| Method | art_painting | photo | sketch | Avg |" in shift.stdout
    assert "| CLIP-ICM linear probe |" in shift.stdout and " ± " in shift.stdout
    run_dir = tmp_path / "out" / "PACS-domain-shift"
    rows = _read_csv(run_dir / "results.csv")
    assert len(rows) == 2 * 3 * 4
    icm = [r for r in rows if r["method"] == "icm_zero_shot"]
    assert {r["tuning"] for r in icm} == {"source-lodo"}
    assert all(r["lam"] in ("0.1", "1.0") and r["n_components"] in ("4", "8") for r in icm)
    assert (run_dir / "table.md").read_text().strip() in shift.stdout
    plots = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert plots == [
        "accuracy_vs_lam.png",
        "accuracy_vs_n_components.png",
        "heatmap_art_painting.png",
        "heatmap_photo.png",
        "heatmap_sketch.png",
    ]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["settings"]["lam"] == [0.1, 1.0]

    # The same images as a custom folder, open-class protocol, oracle tuning: cache reused.
    wild = _run(
        "evaluate",
        "--dataset",
        str(data_root / "PACS"),
        "--protocol",
        "open-class",
        "--tuning",
        "oracle",
        "--seeds",
        "0",
        "--results-format",
        "jsonl",
        *common,
        cwd=tmp_path,
    )
    assert wild.returncode == 0, wild.stderr
    assert "CLIP-ICM zero-shot (oracle)" in wild.stdout
    assert "harmonic mean" in wild.stdout and "novel accuracy" in wild.stdout
    lines = (tmp_path / "out" / "PACS-open-class" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2
    assert {"base_accuracy", "novel_accuracy"} <= set(json.loads(lines[0]))


@pytest.mark.parametrize("interventions", ["image", "counterfactual"])
def test_toyworld_dataset_with_a_given_model(tmp_path, tiny_clip_name, capsys, interventions):
    code = main(
        [
            "evaluate",
            "--protocol",
            "domain-shift",
            "--interventions",
            interventions,
            "--model",
            tiny_clip_name,
            "--n-per-cell",
            "2",
            "--domains",
            "photo,sketch,painting",
            "--lam",
            "1",
            "--n-components",
            "8",
            "--output-dir",
            str(tmp_path),
            "--progress",
            "off",
            "--no-plots",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| Method | photo | sketch | painting | Avg |" in out
    rows = _read_csv(tmp_path / "toyworld-domain-shift" / "results.csv")
    assert {r["tuning"] for r in rows} == {"none", "given"}
    assert {r["interventions"] for r in rows} == {interventions}
    assert not (tmp_path / "toyworld-domain-shift" / "plots").exists()


def _toyclip_available():
    try:
        resolve_model_name("toyclip", None)
    except OSError:
        return False
    return "toyclip" in registered_models()


@pytest.mark.skipif(not _toyclip_available(), reason="ToyCLIP weights are not shipped yet")
def test_default_command_is_toyworld_with_toyclip(tmp_path, capsys):
    # The defaults with smaller worlds: what bare `skcicm` runs, in less time.
    code = main(
        [
            "--n-per-cell",
            "3",
            "--shortcut-n-per-cell",
            "4",
            # At 4 per cell rho 0.9 rounds to every image in its class's style; the domain
            # source needs classes seen in two styles.
            "--rho",
            "0.5",
            "--seeds",
            "0,1",
            "--n-components",
            "64,128",
            "--output-dir",
            str(tmp_path),
            "--progress",
            "off",
            "--no-plots",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    domain_shift, shortcut = out.split("### toyworld-shortcut")
    assert "### toyworld, domain-shift, toyclip" in domain_shift
    assert domain_shift.count("Take-away:") == 1 and shortcut.count("Take-away:") == 1
    header = "| Method | source styles avg | source styles worst group | chosen (lam, K) per seed |"
    assert header in shortcut
    table_rows = [line for line in shortcut.splitlines() if line.startswith("| ")][1:]
    # CLIP zero-shot, CLIP probe, one CLIP-ICM probe per source, the oracle.
    assert len(table_rows) == 7
    assert table_rows[-1].startswith("| CLIP-ICM linear probe, target oracle")
    assert "upper bound" in table_rows[-1]
    assert "InterventionalScorer(" in shortcut
    full = (tmp_path / "toyworld-shortcut" / "table_full.md").read_text()
    assert "(source LODO)" in full and "(source LODO)" not in shortcut
    # `skcicm report --full` prints every head and rule again, from the files alone.
    (tmp_path / "toyworld-shortcut" / "table_full.md").unlink()
    assert main(["report", "--full", "--no-plots", str(tmp_path / "toyworld-shortcut")]) == 0
    reported = capsys.readouterr().out
    assert full.strip() in reported and table_rows[0] in reported
    assert (tmp_path / "toyworld-shortcut" / "table_full.md").read_text() == full
    rows = _read_csv(tmp_path / "toyworld-shortcut" / "results.csv")
    assert {r["method"] for r in rows} == {
        "clip_zero_shot",
        "clip_linear_probe",
        "icm_linear_probe",
    }
    assert {r["interventions"] for r in rows} == {
        "none",
        "image",
        "counterfactual",
        "text",
        "domain",
    }
    assert {r["tuning"] for r in rows} == {
        "none",
        "source-lodo",
        "source-lodo-interventional",
        "target-oracle",
    }
    record = json.loads((tmp_path / "toyworld-domain-shift" / "run.json").read_text())
    assert record["settings"]["lam"] == [0.0, 0.3, 1.0, 3.0]
    assert record["arguments"]["lam_scale"] == "trace"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nosuch"], "Unknown dataset 'nosuch'"),
        (["--dataset", "PACS"], "needs --root"),
        (["--dataset", "PACS", "--root", "/nonexistent/data"], "/nonexistent/data"),
        (["--model", "local-dir:/nonexistent/model"], "open_clip_config.json"),
        (["--model", "ViT-B-32", "--pretrained", "/nonexistent.pt"], "checkpoint file"),
        (["--lam", "0.1,x"], "--lam: 'x' is not a number"),
        (["--n-components", "0"], "--n-components: values must be at least 1"),
        (["--n-components", "9999"], "--n-components: values must be at most"),
        (["--lam", "-1"], "--lam: values must be finite numbers in [0, 1e+100]"),
        (["--lam", "nan"], "--lam: values must be finite numbers in [0, 1e+100]"),
        (["--lam", "1e308"], "--lam: values must be finite numbers in [0, 1e+100]"),
        (["--domains", "photo,photo,sketch"], "--domains lists 'photo' more than once"),
        (["--domains", ","], "--domains is empty"),
        (["--seeds", "0,0"], "--seeds lists 0 more than once"),
        (["--targets", "photo,photo"], "--targets lists 'photo' more than once"),
        (["--targets", ","], "--targets is empty"),
        (["--methods", "clip_zero_shot,clip_zero_shot"], "--methods lists 'clip_zero_shot'"),
        (["--tuning", "oracle", "--tuning", "oracle"], "--tuning lists 'oracle' more than once"),
        (["--interventions", ","], "--interventions is empty"),
        (["--n-jobs", "0"], "--n-jobs must be None or a nonzero integer"),
        (["--protocol", "domain-shift"], "target 'photo' leaves only ['sketch'] as sources"),
        (["--template", "a {}", "--template", "a {name}"], "--template[1]: template 'a {name}'"),
        (["--holdout-fraction", "1.5"], "between 0 and 1"),
        (["--holdout-fraction", "0.05"], "leaves domain 'photo'"),
        (["--n-per-cell", "20", "--holdout-fraction", "0.999"], "at least two classes"),
        (["--targets", "photo,nosuch"], "--targets: unknown domains ['nosuch']"),
        (["--template", "a photo"], "needs exactly one '{}'"),
        (["--template", "a {x} of {}"], "no brace besides"),
        (["--template", "{} {}"], "it has 2"),
        (["--protocol", "open-class", "--methods", "clip_linear_probe"], "do not apply"),
        (["--interventions", "image,audio"], "unknown ['audio']"),
        (["--interventions", "image,counterfactual"], "exclusive"),
        (["--tuning", "interventional", "--interventions", "text"], "add image or counterfactual"),
        (["--interventional-rule", "worst"], "--interventional-rule: 'worst' applies to tuning"),
        (
            ["--protocol", "domain-shift", "--selection-folds", "3"],
            "--selection-folds applies to --protocol shortcut",
        ),
        (
            ["--protocol", "shortcut", "--selection-folds", "1"],
            "selection_folds: must be None or an int >= 2",
        ),
        (["--protocol", "shortcut", "--rho", "1.5"], "rho must be one or more numbers in [0, 1]"),
        (["--protocol", "shortcut", "--shortcut", "colors,smell"], "shortcut must be"),
        (
            ["--protocol", "shortcut", "--shortcut", "style", "--held-out", "painting"],
            "pass target_domain=None",
        ),
        (["--protocol", "shortcut", "--shortcut-n-per-cell", "0"], "at least 1"),
        (
            ["--protocol", "shortcut", "--rho", "0.9,0.99"],
            "Use at least 51 images per cell, or leave 'domain' out",
        ),
        (["--protocol", "shortcut", "--targets", "photo"], "--targets does not apply"),
        (
            ["--protocol", "shortcut", "--dataset", "PACS", "--root", "/d"],
            "needs --dataset toyworld",
        ),
        (
            ["--dataset", "PACS", "--root", "/data", "--interventions", "counterfactual"],
            "needs --dataset toyworld",
        ),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    tmp_path, tiny_clip_name, capsys, monkeypatch, args, message
):
    # Every option is checked before the first image is encoded.
    from skcicm.featurizer import CLIPFeaturizer

    def encoding_started(*_, **__):
        raise RuntimeError("encoding started before the options were checked")

    monkeypatch.setattr(CLIPFeaturizer, "transform", encoding_started)
    monkeypatch.setattr(CLIPFeaturizer, "intervention_embeddings", encoding_started)
    model = [] if "--model" in args else ["--model", tiny_clip_name]
    code = main(
        [
            "evaluate",
            *model,
            "--n-per-cell",
            "1",
            "--domains",
            "photo,sketch",
            "--output-dir",
            str(tmp_path),
            "--progress",
            "off",
            *args,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("skcicm: error: ") and message in last
    assert "Traceback" not in err


def test_output_dir_that_is_a_file_fails_before_encoding(tmp_path, tiny_clip_name, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    code = main(
        ["evaluate", "--model", tiny_clip_name, "--n-per-cell", "1", "--output-dir", str(blocker)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "--output-dir: cannot write results" in err and "Encoding" not in err


def test_a_second_run_leaves_no_stale_outputs(tmp_path, tiny_clip_name, capsys):
    common = [
        "evaluate",
        "--protocol",
        "domain-shift",
        "--model",
        tiny_clip_name,
        "--n-per-cell",
        "2",
        "--domains",
        "photo,sketch,painting",
        "--methods",
        "icm_linear_probe",
        "--seeds",
        "0",
        "--output-dir",
        str(tmp_path),
        "--progress",
        "off",
    ]
    assert main([*common, "--lam", "0,1", "--n-components", "4,8"]) == 0
    run_dir = tmp_path / "toyworld-domain-shift"
    # Three domains leave two sources per target: the output says what that means.
    out, err = capsys.readouterr()
    assert "warning: 3 domains leave 2 source domains" in out
    assert "warning: 3 domains leave 2 source domains" in err
    # The chosen lam and K are in the printed table and table.md, as in results.csv.
    chosen = {
        row["target"]: f"{float(row['lam']):g} / {row['n_components']}"
        for row in _read_csv(run_dir / "results.csv")
    }
    table = (run_dir / "table.md").read_text()
    assert table.strip() in out
    chosen_table = table[table.index("lam / K chosen by tuning") :]
    assert f"| CLIP-ICM linear probe | {' | '.join(chosen.values())} |" in chosen_table
    assert (run_dir / "cv_results.csv").exists()
    assert list((run_dir / "plots").glob("*.png"))
    assert main([*common, "--lam", "0", "--n-components", "4", "--no-plots"]) == 0
    assert not (run_dir / "cv_results.csv").exists()
    assert not list((run_dir / "plots").glob("*.png"))
    assert {row["lam"] for row in _read_csv(run_dir / "results.csv")} == {"0.0"}
    capsys.readouterr()


def test_missing_weights_are_explained_in_options_and_leave_no_run_folder(
    tmp_path, capsys, monkeypatch
):
    from skcicm.featurizer import _models as models

    def offline(*_, **__):
        raise RuntimeError("Failed to download weights for tag 'openai'.")

    monkeypatch.setattr(models.open_clip, "create_model_and_transforms", offline)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", "ViT-B-32", "--pretrained", "openai", "--n-per-cell", "1"]
    assert main([*argv, "--output-dir", str(out), "--progress", "off"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--model ViT-B-32 (--pretrained openai)" in last
    assert "--pretrained /path/to/checkpoint.pt" in last and "--model local-dir:" in last
    assert "pretrained=" not in last and "model_name=" not in last
    assert not out.exists()


def test_unknown_option_exits_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--bogus"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "skcicm: error: unrecognized arguments: --bogus (see --help)"
    ]


def _option_help(parser, action):
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


def test_help_explains_every_option():
    parser = build_parser()
    evaluate = parser._subparsers._group_actions[0].choices["evaluate"]
    options = [a for a in evaluate._actions if a.option_strings and a.dest != "help"]
    assert len(options) > 20
    for action in options:
        text = _option_help(evaluate, action)
        # Every option that takes a value says what it takes by default: argparse's own
        # "(default: X)" from the code's default, or the help text's own words when None.
        if action.nargs != 0:
            assert "default" in text, action.option_strings
            if action.default is not None:
                assert f"(default: {action.default})" in text, (action.option_strings, text)
        for choice in action.choices or ():
            assert choice in text, (action.option_strings, choice)


def test_help_defaults_are_the_code_defaults():
    parser = build_parser()
    evaluate = parser._subparsers._group_actions[0].choices["evaluate"]
    actions = {a.dest: a for a in evaluate._actions}
    assert [float(v) for v in actions["lam"].default.split(",")] == list(DEFAULT_LAM)
    text = _option_help(evaluate, actions["n_components"])
    fractions = []
    for term in text.split("auto = ")[1].split(" for ")[0].split(","):  # "d/4", "3d/4", "d"
        numerator, _, denominator = term.partition("/")
        fractions.append(int(numerator.rstrip("d") or 1) / int(denominator or 1))
    for d in (12, 512, 768):
        from_help = sorted({max(1, round(f * d)) for f in fractions})
        assert from_help == default_n_components(d), (fractions, d)


def test_console_script_and_module_help(tmp_path):
    script = Path(sys.executable).with_name("skcicm")
    if not script.exists():
        pytest.skip("the skcicm console script is not installed in this environment")
    result = subprocess.run(
        [str(script), "evaluate", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--n-components" in result.stdout


def test_help_loads_no_deep_learning_or_plotting_library():
    heavy = ("sklearn", "torch", "torchvision", "open_clip", "matplotlib")
    code = (
        "import runpy, sys\n"
        "sys.argv = ['skcicm', '--help']\n"
        "try:\n"
        "    runpy.run_module('skcicm', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED', sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: skcicm" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"


def test_package_names_are_imported_on_first_use():
    code = (
        "import sys, skcicm\n"
        "print('sklearn' in sys.modules)\n"
        "from skcicm import InvariantCausalMechanismCV, NoInterventionError\n"
        "print('sklearn' in sys.modules, 'torch' in sys.modules)\n"
        "print(sorted(set(skcicm.__all__) - set(dir(skcicm))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["False", "True False", "[]"]
    import skcicm

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        skcicm.Nope  # noqa: B018
    assert skcicm.CLIPFeaturizer.__name__ == "CLIPFeaturizer"


@pytest.mark.parametrize(
    "protocol, results_format", [("domain-shift", "csv"), ("open-class", "jsonl")]
)
def test_report_rerenders_table_and_plots_without_refitting(
    tmp_path, tiny_clip_name, capsys, monkeypatch, protocol, results_format
):
    out = tmp_path / "out"
    argv = ["evaluate", "--model", tiny_clip_name, "--n-per-cell", "2", "--seeds", "0,1"]
    argv += ["--domains", "photo,sketch,painting", "--protocol", protocol]
    argv += ["--lam", "0,1", "--n-components", "4,8", "--results-format", results_format]
    assert main([*argv, "--output-dir", str(out), "--progress", "off"]) == 0
    run_dir = out / f"toyworld-{protocol}"
    table = (run_dir / "table.md").read_text()
    plots = sorted(path.name for path in (run_dir / "plots").glob("*.png"))
    assert len(plots) == 5
    (run_dir / "table.md").unlink()
    shutil.rmtree(run_dir / "plots")
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise AssertionError("report must not fit or encode")

    monkeypatch.setattr(InvariantCausalMechanism, "fit", refuse)
    monkeypatch.setattr(CLIPFeaturizer, "transform", refuse)
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "table.md").read_text() == table
    assert sorted(path.name for path in (run_dir / "plots").glob("*.png")) == plots
    assert table.strip() in capsys.readouterr().out
    # Without run.json, the names come from the rows.
    (run_dir / "run.json").unlink()
    assert main(["report", "--no-plots", str(run_dir)]) == 0
    assert (run_dir / "table.md").read_text() == table


def test_report_names_what_is_missing_or_ambiguous(tmp_path, capsys):
    assert main(["report", str(tmp_path / "absent")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 1
    assert "holds no results.csv or results.jsonl" in capsys.readouterr().err
    (tmp_path / "results.csv").write_text("dataset,target,method,seed,accuracy\n")
    assert main(["report", str(tmp_path)]) == 1
    assert "holds no results rows" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text("")
    assert main(["report", str(tmp_path)]) == 1
    assert "both results.csv and results.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--targets", "photo,nosuch"], "--targets: unknown domains"),
        (["--holdout-fraction", "0.05"], "leaves domain 'photo'"),
        (["--n-components", "9999"], "--n-components: values must be at most 128"),
    ],
)
def test_option_errors_come_before_the_weights_are_loaded(
    tmp_path, capsys, monkeypatch, args, message
):
    # The model's configuration gives the embedding dimension; no weights need loading.
    from skcicm.featurizer import _models as models

    def loading(*_, **__):
        raise AssertionError("weights loaded before the options were checked")

    monkeypatch.setattr(models, "_load_resolved", loading)
    argv = ["evaluate", "--model", "toyclip", "--n-per-cell", "1", "--domains", "photo,sketch"]
    code = main([*argv, "--output-dir", str(tmp_path), "--progress", "off", *args])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and message in last


@pytest.mark.parametrize(
    ("cores", "num_workers", "before", "expected"),
    [(2, 2, 2, 1), (16, 2, 16, 14), (16, 2, 4, 4), (1, 0, 8, 1)],
)
def test_torch_threads_and_decoding_threads_fit_the_cores(
    monkeypatch, cores, num_workers, before, expected
):
    import torch

    from skcicm.cli.evaluate import limit_torch_threads

    saved = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    try:
        torch.set_num_threads(before)
        assert limit_torch_threads(num_workers) == expected
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(saved)
