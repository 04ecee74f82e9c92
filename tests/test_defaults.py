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
                   *(("rlhf", k) for k in ("seed", "n_layer", "n_embd", "sft_steps", "sft_lr", "rm_steps",
                                           "ppo_steps", "kl_coef", "ppo_lr"))}


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


# ---- the tabs open at the tables' values (issue 23) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tabs_built(models, tiny_dir):
    from app import build_demo

    return build_demo(models, default_model=tiny_dir)._tinygpt_share.tabs


def start(tabs, tab_id) -> dict:
    return tabs[tab_id].defaults  # each link field's start-up value: what the component opens with


def test_sampling_and_pruning_open_at_the_tables(tabs_built):
    s = start(tabs_built, "sampling")
    assert {k: s[k] for k in ("prompt", "num_samples", "max_new_tokens", "temperature", "top_k", "top_p", "seed")} \
        == {"prompt": D.SAMPLE_TAB["start"], **{k: D.SAMPLE_TAB[k] for k in (
            "num_samples", "max_new_tokens", "temperature", "top_k", "top_p", "seed")}}
    assert s["fast"] == (D.SAMPLE_TAB["dtype"] == "bf16")
    p = start(tabs_built, "pruning")
    assert p["configs"] == list(D.PRUNE["configs"])
    assert {k: p[k] for k in ("custom", "max_new_tokens", "temperature", "top_k", "seed")} == \
        {k: D.PRUNE[k] for k in ("custom", "max_new_tokens", "temperature", "top_k", "seed")}


def test_calculator_opens_at_params(tabs_built):
    from tabs import calculator

    c = start(tabs_built, "calculator")
    assert {k: c[k] for k in ("dtype", "optimizer", "batch_size", "tokens", "tflops", "mfu")} == \
        {k: D.PARAMS[k] for k in ("dtype", "optimizer", "batch_size", "tokens", "tflops", "mfu")}
    form = calculator.preset_values(D.PARAMS["preset"])
    keys = ["n_layer", "n_embd", "n_head", "n_kv_head", "block_size", "vocab_size", "bias", "tied", "ffn_mult",
            "seq_len", *calculator.SHARE_ARCH]
    assert [c[k] for k in keys] == list(form)  # the preset's shape; seq_len None = its block size
    assert D.PARAMS["seq_len"] is None and c["seq_len"] == c["block_size"]


def test_inside_the_model_tabs_open_at_their_tables(tabs_built):
    from tabs import attention
    from tinygpt.interpret.attention import HEAD_VIEWS

    e = start(tabs_built, "embeddings")
    assert (e["common"], e["rare"], e["pool"], e["space"], e["nn_word"], e["nn_k"], e["ctx_word"],
            e["ctx_sentences"]) == tuple(D.EMBED_TAB[k] for k in (
                "common", "rare", "pool", "space", "neighbour_word", "neighbours", "ctx_word", "ctx_sentences"))
    a = start(tabs_built, "attention")
    assert (a["prompt"], a["layer"], a["head"]) == (D.ATTENTION_TAB["prompt"], D.ATTENTION_TAB["layer"],
                                                    D.ATTENTION_TAB["head"])
    assert a["view"] == attention.VIEWS[HEAD_VIEWS.index(D.ATTENTION_TAB["view"])]
    p = start(tabs_built, "positions")
    assert {k: p[k] for k in D.POSITIONS} == dict(D.POSITIONS)


def test_efficiency_opens_at_its_tables(tabs_built, models, tiny_dir):
    from tabs.efficiency import default_groups, default_lengths
    from tinygpt.efficiency import lengths_offered

    e = start(tabs_built, "efficiency")
    cfg = models.get(tiny_dir)[0].config
    assert (e["kv_prompt"], e["kv_tokens"]) == (D.KV_CACHE["prompt"], D.KV_CACHE["n_new"])
    assert e["groups"] == default_groups(cfg.n_head) and D.GQA["n_kv_head"] is None
    assert e["gqa_lengths"] == default_lengths(cfg.block_size) and D.GQA["seq_lens"] is None
    assert e["gqa_batch"] == D.GQA["batch"]
    assert {k: e[f"flash_{k}"] for k in ("tokens", "block_q", "block_k", "head_size", "causal", "seed")} == \
        {k: D.FLASH[k] for k in ("tokens", "block_q", "block_k", "head_size", "causal", "seed")}
    offered, _ = lengths_offered()
    assert e["bench_lengths"] == [f"{T:,}" for T in D.FLASH["bench_lengths"] if T in offered]
    assert (e["bench_head_size"], e["bench_repeats"]) == (D.FLASH["bench_head_size"], D.FLASH["bench_repeats"])
    assert (e["profile_batch"], e["profile_repeats"]) == (D.PROFILE_TAB["batch"], D.PROFILE_TAB["repeats"])
    assert e["profile_lengths"] == default_lengths(cfg.block_size) and D.PROFILE_TAB["seq_len"] is None


def test_course_map_rows_read_the_tables():
    from tabs.coursemap import ARCH_START, ENTRIES

    classic = next(e for e in ENTRIES if e.settings.get("prompt"))
    assert classic.settings == {"prompt": D.SAMPLE_TAB["start"], "num_samples": D.SAMPLE_TAB["num_samples"],
                                "max_new_tokens": D.SAMPLE_TAB["max_new_tokens"]}
    words = next(e for e in ENTRIES if e.settings.get("common"))
    assert (words.settings["common"], words.settings["rare"]) == (D.EMBED_TAB["common"], D.EMBED_TAB["rare"])
    assert ARCH_START == {"head_dim": 0, "mlp": "gelu", "norm": "layernorm", "pos_encoding": "learned",
                          "qkv_bias": "auto", "n_experts": 0, "moe_top_k": 1}  # GPT-2, PARAMS' preset
