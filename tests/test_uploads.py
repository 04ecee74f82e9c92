"""Uploads are bounded before they are read: the DPO pairs file (size, lines), config.json (size, nesting depth)
and every text upload are refused in one sentence that names the limit and the file's own name (never the
server's path to it), before their content is parsed. Files over a limit are sparse here: nothing is written or
read, only their size exists."""
import os
import time

import gradio as gr
import pytest

from tinygpt.beyond.dpo import MAX_PAIRS_BYTES, MAX_PAIRS_LINES, PairsError, read_pairs
from tinygpt.data import MAX_UPLOAD_BYTES, TextError, prepare_text, read_upload
from tinygpt.hf_config import MAX_JSON_BYTES, MAX_JSON_DEPTH, json_too_deep, load_config_json, parse_config_json

PAIR = '{"prompt": "Q", "chosen": " yes", "rejected": " no"}\n'


def sparse(path, size: int) -> str:
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


def no_path(message: str, path) -> bool:
    return str(os.path.dirname(path)) not in message and "/" not in message


def test_pairs_file_over_the_byte_limit_is_refused_unread(tmp_path):
    f = sparse(tmp_path / "big.jsonl", 84_000_000)  # the probe's 1,000,000-line file was 84 MB
    t = time.perf_counter()
    with pytest.raises(PairsError) as e:
        read_pairs(f)
    msg = str(e.value)
    assert time.perf_counter() - t < 0.5
    assert msg == (f"big.jsonl is 84,000,000 bytes; a pairs file may be at most {MAX_PAIRS_BYTES:,} bytes "
                   f"({MAX_PAIRS_LINES:,} lines).")
    assert no_path(msg, f)


def test_pairs_file_over_the_line_limit_is_refused_unparsed(tmp_path):
    f = tmp_path / "many.jsonl"
    f.write_text(PAIR * (MAX_PAIRS_LINES + 1))
    with pytest.raises(PairsError) as e:
        read_pairs(str(f))
    assert str(e.value) == (f"many.jsonl has {MAX_PAIRS_LINES + 1:,} lines; a pairs file may have at most "
                            f"{MAX_PAIRS_LINES:,} (one pair per line).")
    f.write_text(PAIR * MAX_PAIRS_LINES)  # exactly at the limit: read
    assert len(read_pairs(str(f))) == MAX_PAIRS_LINES


@pytest.mark.parametrize("line,msg", [
    ("[" * 10_000 + "]" * 10_000, f"Line 2 of deep.jsonl nests arrays or objects more than {MAX_JSON_DEPTH} levels"),
    ('{"prompt": ' * 5_000 + '"x"' + "}" * 5_000, "more than 32 levels deep"),
    ('{"prompt": ' + "9" * 5_000 + "}", "Line 2 of deep.jsonl holds a number thousands of digits long."),
])
def test_pairs_line_nesting_is_refused_before_parsing(tmp_path, line, msg):
    f = tmp_path / "deep.jsonl"
    f.write_text(PAIR + line + "\n")
    with pytest.raises(PairsError) as e:
        read_pairs(str(f))
    assert msg in str(e.value) and "Recursion" not in str(e.value) and no_path(str(e.value), f)


def test_pairs_errors_name_the_file_not_the_server_path(tmp_path):
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(PairsError) as e:
        read_pairs(str(f))
    assert str(e.value).startswith("latin1.jsonl is not UTF-8 text") and no_path(str(e.value), f)
    with pytest.raises(PairsError) as e:
        read_pairs(str(tmp_path / "gone.jsonl"))
    assert str(e.value) == "gone.jsonl could not be read: upload it again."


def test_config_json_bounds(tmp_path):
    big = sparse(tmp_path / "config.json", 5_000_000)
    with pytest.raises(ValueError) as e:
        load_config_json(big)
    assert str(e.value) == f"config.json is 5,000,000 bytes, over the {MAX_JSON_BYTES:,}-byte limit for a config.json."
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    with pytest.raises(ValueError) as e:
        load_config_json(str(deep))
    assert str(e.value) == (f"deep.json nests arrays or objects more than {MAX_JSON_DEPTH} levels deep, the limit "
                            "here (a config.json uses 3 or 4).")
    with pytest.raises(ValueError, match="more than 32 levels deep"):
        parse_config_json('{"a": ' * 10_000 + "1" + "}" * 10_000)
    with pytest.raises(ValueError) as e:
        parse_config_json("x" * (MAX_JSON_BYTES + 1))
    assert str(e.value) == "config.json is 1,000,001 bytes, over the 1,000,000-byte limit for a config.json."
    # brackets inside strings do not count; a real config nests a few levels
    assert not json_too_deep('{"note": "' + "[" * 1000 + '", "rope_scaling": {"factor": [1, [2]]}}')
    assert json_too_deep("[" * 33 + "]" * 33) and not json_too_deep("[" * 32 + "]" * 32)


def test_text_upload_over_the_byte_limit_is_refused_unread(tmp_path):
    f = sparse(tmp_path / "novel.txt", 84_000_000)
    t = time.perf_counter()
    for call in (lambda: read_upload(f), lambda: prepare_text(file=f)):
        with pytest.raises(TextError) as e:
            call()
        assert str(e.value) == (f"novel.txt is 84,000,000 bytes; a text upload may be at most {MAX_UPLOAD_BYTES:,}"
                                " bytes.")
    assert time.perf_counter() - t < 0.5


def test_tabs_pass_the_bounds_on(models, tiny_dir, tmp_path):
    """The DPO tab, the calculator's config.json upload, Fine-tune and Train: one sentence each."""
    from conftest import drain

    from tabs import alignment, calculator
    from tabs.kit.sessions import SessionStore
    from tabs.train.run import UPLOAD, get_corpus

    pairs = sparse(tmp_path / "pairs.jsonl", 84_000_000)
    with pytest.raises(gr.Error) as e:
        drain(alignment.on_dpo(models, SessionStore(), tiny_dir, alignment.UPLOAD, 20, pairs, 0.1, 0, 3, 4, 1e-3,
                               "All weights", "", 1, progress=lambda *a, **k: None))
    assert e.value.message.startswith("pairs.jsonl is 84,000,000 bytes; a pairs file may be at most")
    deep = tmp_path / "config.json"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    with pytest.raises(gr.Error) as e:
        calculator.on_config_json("", str(deep))
    assert "more than 32 levels deep" in e.value.message and "Recursion" not in e.value.message
    essay = sparse(tmp_path / "essay.txt", 2_000_000)
    with pytest.raises(TextError, match="essay.txt is 2,000,000 bytes; a text upload may be at most"):
        get_corpus(UPLOAD, essay)
