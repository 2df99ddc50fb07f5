"""The command line: one clear line and exit status 2 for every error a reader can
cause; SIGTERM saves a checkpoint and --resume continues to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nasedu.cli import main


def _run_main(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["search", "nope", "--budget", "smoke"],
            "unknown search method 'nope'; valid choices:",
        ),
        (
            ["search", "random", "--budget", "huge"],
            "unknown budget 'huge'; valid choices: smoke",
        ),
        (
            ["search", "random", "--dataset", "mnist"],
            "unknown dataset 'mnist'; valid choices:",
        ),
        (["search", "random", "--set", "sample=3"], "unknown setting 'sample'"),
        (["train", "--genotype", "DARTS_V9"], "is not a published genotype"),
        (["train", "--genotype", '{"normal": ['], "malformed genotype JSON"),
        (["genotypes", "nope"], "unknown genotype 'nope'; valid choices: AmoebaNet_A"),
    ],
)
def test_errors_are_one_line_with_exit_2(capsys, tmp_path, argv, message):
    code, out, err = _run_main(
        capsys,
        *argv,
        *(["--out", str(tmp_path / "o")] if argv[0] in ("search", "train") else []),
    )
    assert code == 2
    assert err.startswith("nasedu: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cuda_requested_without_cuda_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, _, err = _run_main(
        capsys, "search", "random", "--device", "cuda", "--out", str(tmp_path / "o")
    )
    assert code == 2 and "CUDA" in err and err.count("\n") == 1


def test_listing_commands(capsys):
    code, out, _ = _run_main(capsys, "genotypes")
    assert code == 0 and "DARTS_V2" in out and "PNASNet_5" in out
    code, out, _ = _run_main(capsys, "genotypes", "darts_v2")
    assert json.loads(out)["normal"][0] == ["sep_conv_3x3", 0]
    code, out, _ = _run_main(capsys, "methods")
    assert "random" in out.split()


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "nasedu", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, overrides, total",
    [
        ("random", ["samples=4"], 4),
        (
            "darts",
            ["epochs=3"],
            3,
        ),  # α and the derived cell must survive the interruption
        ("snas", ["epochs=3"], 3),
        ("autokeras", ["models=3", "t_min=0.3"], 3),
        ("nasbot", ["evaluations=3", "init_evaluations=2"], 3),
        ("enas", ["micro.training.epochs=3"], 3),
        ("enas_random", ["micro.training.epochs=3"], 3),
        ("nas_rl", ["samples=6", "replicas=1"], 6),
        ("nas_rl_rnn", ["samples=6", "replicas=1"], 6),
        ("pnas", ['primitives=["skip_connect"]', "blocks=2", "beam=2"], 5),
        ("nasnet", ["samples=4", "batch_size=2", "child.train.epochs=1"], 4),
        ("nasnet_random", ["samples=4", "child.train.epochs=1"], 4),
        ("hierarchical", ["evaluations=4", "population=2"], 4),
        ("hierarchical_random", ["evaluations=3"], 3),
    ],
)
def test_sigterm_saves_and_resume_matches_uninterrupted_run(
    tmp_path, method, overrides, total
):
    args = ["search", method, "--budget", "smoke", "--seed", "2", "--quiet"]
    for item in overrides:
        args += ["--set", item]
    whole = _cli(*args, "--out", str(tmp_path / "whole"))
    interrupted = _cli(*args, "--out", str(tmp_path / "cut"))
    history = tmp_path / "cut" / "history.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (
        history.exists() and history.read_text().strip()
    ):
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGTERM)
    _, err = interrupted.communicate(timeout=120)
    assert interrupted.returncode == 130, err
    assert "continue with --resume" in err
    done = len(history.read_text().splitlines())
    assert 1 <= done < total and not (tmp_path / "cut" / "result.json").exists()

    resumed = _cli(*args, "--out", str(tmp_path / "cut"), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    def trace(folder):
        lines = (tmp_path / folder / "history.jsonl").read_text().splitlines()
        return [
            (r["step"], r["architecture"], r["reward"], r["extra"].get("alphas"))
            for r in map(json.loads, lines)
        ]

    assert len(trace("whole")) == total
    if method in (
        "darts",
        "snas",
    ):  # the comparison below must include α, not None == None
        assert all(alphas is not None for *_, alphas in trace("whole"))
    assert trace("cut") == trace("whole")
    assert json.loads((tmp_path / "cut" / "result.json").read_text()) == json.loads(
        (tmp_path / "whole" / "result.json").read_text()
    )


def test_train_command_retrains_a_published_cell(capsys, tmp_path):
    out = tmp_path / "train"
    code, stdout, err = _run_main(
        capsys,
        "train",
        "--genotype",
        "DARTS_V2",
        "--budget",
        "smoke",
        "--quiet",
        "--out",
        str(out),
        "--set",
        "train.epochs=1",
    )
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert 0.0 <= result["test_acc"] <= 1.0 and result["params"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["train"]["epochs"] == 1 and config["dataset"] == "digits"
    # A search's result.json can be retrained directly (it wraps the cell in "architecture").
    found = tmp_path / "result.json"
    found.write_text(
        json.dumps(
            {"method": "random", "architecture": config["genotype"], "reward": 0.5}
        )
    )
    code, _, err = _run_main(
        capsys,
        "train",
        "--genotype",
        str(found),
        "--budget",
        "smoke",
        "--quiet",
        "--out",
        str(tmp_path / "t2"),
        "--set",
        "train.epochs=1",
    )
    assert code == 0, err
    assert (out / "checkpoint.pt").is_file()


def test_bench_train_reports_time_and_memory(capsys, tmp_path, monkeypatch):
    from nasedu.bench import BENCHMARKS, bench_train

    # The registered "train" benchmark runs at the paper's shapes (minutes on a CPU); the
    # command line is exercised here with the same function at a tiny shape.
    monkeypatch.setitem(
        BENCHMARKS._items,
        "tiny-train",
        lambda device: bench_train(device, batch_size=2, C=4, layers=5, repeats=1),
    )
    out = tmp_path / "bench.json"
    code, stdout, err = _run_main(
        capsys, "bench", "tiny-train", "--device", "cpu", "--out", str(out)
    )
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["seconds_per_step"] > 0 and report["peak_memory_mb"] > 0
    assert report["batch_size"] == 2 and report["layers"] == 5
    code, _, err = _run_main(capsys, "bench", "nope")
    assert code == 2 and "unknown benchmark 'nope'; valid choices:" in err
