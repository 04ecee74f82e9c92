"""Fine-tune tab handlers: clean/describe, a full fine-tune run, per-session results, bad uploads."""
import gradio as gr
import pytest
import torch
from conftest import drain

from tabs import finetune
from tabs.finetune import STOP as stop_session
from tabs.kit.sessions import SessionStore

ESSAY = ("The river bends twice before it reaches the old mill. Every spring the water rises and the miller "
         "opens the sluice gates so the wheel can turn. ") * 40


class Req:  # stands in for gr.Request: only the session hash matters
    def __init__(self, h):
        self.session_hash = h


def form(tiny_dir, **changes):
    """The tab's form as keyword arguments (a short run on the tiny model)."""
    f = dict(model_name=tiny_dir, file=None, text=ESSAY, lossy=False, drop_boilerplate=True, prompt="The river",
             seed=3, trainable="Top 2 blocks (fast)", steps=12, context=32, batch_size=4, lr=1e-3, max_new_tokens=10)
    f.update(changes)
    return f


def run(models, sessions, tiny_dir, request=None, **changes):
    return finetune.on_finetune(models, sessions, **form(tiny_dir, **changes), request=request,
                                progress=lambda *a, **k: None)


def test_prepare_describes_text(models, tiny_dir):
    cleaned, steps_md, stats_md, prompt = finetune.on_prepare(models, tiny_dir, None, ESSAY + "\r\nhttp://x.org\r\n",
                                                              False, True)
    assert "http" not in cleaned and "URL" in steps_md
    assert "base perplexity" in stats_md and prompt == "The river bends twice before it reaches the"


def test_finetune_run_isolated_per_session(models, tiny_dir, tmp_path):
    sessions = SessionStore()
    base, _ = models.get(tiny_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    out = drain(run(models, sessions, tiny_dir, Req("alice")))
    status, fig, compare, metrics, rows = out
    assert "Done" in status and "Before fine-tuning" in compare and "After fine-tuning" in compare
    assert "held-out perplexity" in metrics and rows and len(rows[0]) == 5
    assert sessions.get(Req("alice")).get("finetuned") is not None
    assert sessions.get(Req("bob")).get("finetuned") is None  # another user sees nothing
    with pytest.raises(gr.Error, match="nothing to download"):
        finetune.on_download(sessions, Req("bob"))
    files = finetune.on_download(sessions, Req("alice"))
    assert files[0].endswith("model.safetensors")
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    sessions.drop(Req("alice"))
    assert sessions.get(Req("alice")).get("finetuned") is None


def test_stop_ends_run_early(models, tiny_dir):
    sessions = SessionStore()
    gen = run(models, sessions, tiny_dir, Req("carol"), trainable="All weights (slow)", steps=400, batch_size=2,
              max_new_tokens=5)
    next(gen)
    for i, out in enumerate(gen):
        if i == 1:
            stop_session(sessions, Req("carol"))
    assert "Done" in out[0] and "stopped early" in out[3]


@pytest.mark.parametrize("content,msg", [(b"", "empty"), (b"\x00\x00PK\x03\x04", "binary"),
                                         ("na\u00efve ".encode("latin-1") * 100, "not UTF-8")])
def test_bad_uploads_give_messages(models, tiny_dir, tmp_path, content, msg):
    f = tmp_path / "up.txt"
    f.write_bytes(content)
    with pytest.raises(gr.Error, match=msg):
        finetune.on_prepare(models, tiny_dir, str(f), "", False, True)
    with pytest.raises(gr.Error, match=msg):
        drain(run(models, SessionStore(), tiny_dir, file=str(f), text="", prompt="", trainable="all", steps=2))


def test_too_short_and_too_long(models, tiny_dir, tmp_path):
    with pytest.raises(gr.Error, match="too short"):
        drain(run(models, SessionStore(), tiny_dir, text="Just a few words here.", prompt="", steps=2))
    with pytest.raises(gr.Error, match="limit"):
        finetune.on_prepare(models, tiny_dir, None, "a" * 200_001, False, True)
