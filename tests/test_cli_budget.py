"""The command line's budget: train, finetune, dpo, rlhf, scaling and profile report their estimate in --json
("budget", unlimited by default: the CLI is not limited unless asked), and --budget applies the server's limits
(tinygpt.budget.limits_from_env) and refuses an over-limit run before any work: one line, exit code 2."""
import json

import pytest
from conftest import run_cli

from tinygpt.cli import build_parser

TEXT = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 40
REQUIRED = {"train": ["--text", "t.txt", "--out", "o"], "finetune": ["--text", "t.txt", "--out", "o"],
            "dpo": ["--synthetic", "4"], "rlhf": [], "scaling": [], "profile": []}


@pytest.mark.parametrize("cmd", list(REQUIRED))
def test_every_budgeted_command_takes_the_one_flag(cmd):
    p = build_parser()
    assert p.parse_args([cmd, *REQUIRED[cmd]]).budget is False
    assert p.parse_args([cmd, *REQUIRED[cmd], "--budget"]).budget is True


def test_sample_and_eval_have_no_budget_flag():
    from tinygpt.cli import CliError

    with pytest.raises(CliError, match="--budget"):
        build_parser().parse_args(["eval", "--text", "t", "--budget"])


def test_profile_refused_before_any_work(tiny_dir, monkeypatch):
    monkeypatch.setenv("TINYGPT_RUN_MEMORY_GB", "0.000001")
    r = run_cli("profile", "--model", tiny_dir, "--seq-len", "16", "--budget", "--json")
    assert r.returncode == 2 and r.stdout == ""
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("error: This run needs about") and "at most 1 kB" in err and "TINYGPT_RUN_MEMORY_GB" in err
    # the same run without --budget is not limited: it runs and reports the estimate against no limits
    r = run_cli("profile", "--model", tiny_dir, "--seq-len", "16", "--repeats", "1", "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)["budget"]
    assert b["fits"] is True and b["message"] is None and set(b["limits"].values()) == {None}
    assert b["memory_bytes"] > 0 and b["seconds"] > 0 and b["action"] == "profile"


def test_budget_within_the_limits_reports_them(tiny_dir, monkeypatch):
    monkeypatch.delenv("TINYGPT_RUN_MEMORY_GB", raising=False)
    monkeypatch.delenv("TINYGPT_RUN_MINUTES", raising=False)
    r = run_cli("profile", "--model", tiny_dir, "--seq-len", "16", "--repeats", "1", "--threads", "1", "--budget",
                "--json")
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)["budget"]
    assert b["fits"] is True and b["limits"]["run_memory_bytes"] == 2e9 and b["limits"]["run_seconds"] == 600
    assert "budget: about" in r.stderr  # said on stderr, the report stays one JSON object


def test_training_refused_before_any_work(tmp_path, tiny_dir, monkeypatch):
    f = tmp_path / "t.txt"
    f.write_text(TEXT)
    monkeypatch.setenv("TINYGPT_RUN_MINUTES", "0.000001")
    for cmd in (["train", "--text", str(f), "--tokenizer", "char", "--n-layer", "1", "--n-head", "2", "--n-embd",
                 "16", "--block-size", "16", "--steps", "5"],
                ["finetune", "--model", tiny_dir, "--text", str(f), "--steps", "2", "--block-size", "16"]):
        out = tmp_path / cmd[0]
        r = run_cli(*cmd, "--out", str(out), "--budget")
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("error: This run needs about")
        assert "step 1/" not in r.stderr and not out.exists()  # nothing trained, nothing written
    r = run_cli("dpo", "--model", tiny_dir, "--synthetic", "8", "--steps", "2", "--budget")
    assert r.returncode == 2 and "at most" in r.stderr and "step 1/" not in r.stderr
    r = run_cli("rlhf", "--sft-steps", "2", "--rm-steps", "1", "--ppo-steps", "1", "--budget")
    assert r.returncode == 2 and "use fewer SFT, reward-model or PPO steps" in r.stderr
    r = run_cli("scaling", "--text", str(f), "--shapes", "1x1x8,1x2x16,1x2x24", "--steps", "10", "--budgets",
                "1e7,3e7", "--context", "16", "--batch-size", "4", "--min-steps", "3", "--max-steps", "400", "--budget")
    assert r.returncode == 2 and "This run needs about" in r.stderr and "run 1/" not in r.stderr


def test_bad_limits_are_one_line(tiny_dir, monkeypatch):
    monkeypatch.setenv("TINYGPT_RUN_MINUTES", "soon")
    r = run_cli("profile", "--model", tiny_dir, "--seq-len", "16", "--budget")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: TINYGPT_RUN_MINUTES must be")
