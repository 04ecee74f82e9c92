"""One table of defaults (tinygpt.defaults): the command line and the library's config classes read theirs from it."""
from dataclasses import asdict

import pytest

from tinygpt import defaults as D
from tinygpt.cli import build_parser

REQUIRED = {  # the arguments a subcommand cannot run without (not defaults)
    "sample": [], "params": [], "train": ["--text", "t.txt", "--out", "o"],
    "finetune": ["--text", "t.txt", "--out", "o"], "eval": ["--text", "t.txt"], "embed": ["--words", "dog"],
    "attention": ["--text", "t"], "profile": [], "scaling": [], "dpo": ["--synthetic", "2"], "rlhf": []}
TABLES = {cmd: [D.ACTIONS[cmd]] for cmd in REQUIRED}
TABLES["finetune"] = [D.FINETUNE, D.TRAIN]  # finetune shares train's other options (--weight-decay, --save-dtype)
ALIASES = {("finetune", "block_size"): "context"}  # the Fine-tune tab calls --block-size "context"
GIVEN = {"cmd", "func", "json", "text", "out", "words", "synthetic", "pairs"}  # required, or not settings
# None on purpose: the callee applies the table's value (params_config: PARAMS' preset; finetune_config: warm-up
# and evaluations from --steps; RLHFConfig: RLHF's values), so only what was given is passed on
NONE_ON_PURPOSE = {("params", "preset"), ("finetune", "warmup"), ("finetune", "eval_interval"),
                   *(("rlhf", k) for k in ("seed", "sft_steps", "rm_steps", "ppo_steps", "kl_coef", "ppo_lr"))}


@pytest.mark.parametrize("cmd", list(REQUIRED))
def test_cli_defaults_are_tinygpt_defaults(cmd):
    a = vars(build_parser().parse_args([cmd, *REQUIRED[cmd]]))
    tables = TABLES[cmd] + [D.COMMON]
    for dest, value in a.items():
        if dest in GIVEN:
            continue
        key = ALIASES.get((cmd, dest), dest)
        if (cmd, dest) in NONE_ON_PURPOSE:
            assert value is None, (cmd, dest, value)
            continue
        table = next((t for t in tables if key in t), None)
        if table is None:  # a switch that is off unless given (--no-bias, --tied), or "not given" (--n-layer)
            assert value in (None, False), f"{cmd} --{dest}: default {value!r} is not in tinygpt.defaults"
            continue
        assert value == table[key] and type(value) is type(table[key]), (cmd, dest, value, table[key])
    options = {ALIASES.get((cmd, k), k) for k in a}
    assert not set(TABLES[cmd][0]) - options, f"tinygpt.defaults has settings {cmd} lacks"


def test_library_config_classes_read_the_tables():
    from tinygpt.beyond import DPOConfig, RLHFConfig, SweepConfig
    from tinygpt.compute import A100_TFLOPS, DEFAULT_MFU, DEFAULT_TOKENS
    from tinygpt.efficiency.measure import BENCH_LENGTHS
    from tinygpt.finetune import DEFAULTS

    assert asdict(SweepConfig()) == {k: v for k, v in D.SCALING.items() if k not in ("text", "workers")}
    dpo, rlhf = DPOConfig(), RLHFConfig()
    assert {k: getattr(dpo, k) for k in D.DPO if k != "model"} == {k: v for k, v in D.DPO.items() if k != "model"}
    assert {k: getattr(rlhf, k) for k in D.RLHF if hasattr(rlhf, k)} == \
        {k: v for k, v in D.RLHF.items() if k not in ("threads", "samples")}
    assert DEFAULTS is D.FINETUNE
    assert (A100_TFLOPS, DEFAULT_MFU, DEFAULT_TOKENS) == (D.PARAMS["tflops"], D.PARAMS["mfu"], D.PARAMS["tokens"])
    assert BENCH_LENGTHS == D.FLASH["bench_lengths"]


def test_tables_are_read_only_and_tab_variants_differ_only_where_stated():
    with pytest.raises(TypeError):
        D.SAMPLE["temperature"] = 1.0
    assert {k: v for k, v in D.SAMPLE_TAB.items() if D.SAMPLE[k] != v} == \
        {"start": "one ring to rule them all,", "num_samples": 3, "max_new_tokens": 100}
