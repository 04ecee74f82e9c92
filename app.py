"""TinyGPT Lab: a Gradio dashboard that opens up a GPT. This file only assembles the tabs.

Run `python app.py` (works offline: the embedded model stands in for GPT-2 with a visible notice).
"""
from __future__ import annotations

import asyncio
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no analytics unless the host opts in

import gradio as gr  # noqa: E402

from tabs import (  # noqa: E402
    alignment,
    attention,
    calculator,
    coursemap,
    efficiency,
    embeddings,
    finetune,
    positions,
    pruning,
    sampling,
    scaling,
    train,
)
from tabs.kit import gpu, registry  # noqa: E402
from tabs.kit.common import SAMPLE_CSS, plain_errors  # noqa: E402
from tabs.kit.lecture import LECTURE_CSS  # noqa: E402
from tabs.kit.sessions import GradioSessions, SessionStore  # noqa: E402
from tinygpt import ModelCache  # noqa: E402
from tinygpt.batching import Batchers  # noqa: E402

CSS = SAMPLE_CSS + LECTURE_CSS + registry.SHARE_CSS
MAX_THREADS = 256  # worker threads for handlers (see launch_kwargs)
STATE_SESSIONS = 2000  # sessions Gradio keeps at most (~2 MB each); the oldest beyond are dropped


def make_batchers() -> Batchers | None:
    """Concurrent Sampling requests and Layer pruning runs share forward passes (one Batcher per model, created on
    first use).
    TINYGPT_BATCHING=0 turns it off (every request then decodes alone, one after another: the load test's
    "before"); TINYGPT_BATCH_MEMORY_GB is each batcher's budget for weights + KV caches (default 4);
    TINYGPT_BATCH_EXACT=0 drops the padding rows that make a row's text independent of its neighbours (a lone
    request is then faster, but a near-tie can flip between alone and in a batch)."""
    if os.environ.get("TINYGPT_BATCHING", "1").strip() == "0":
        return None
    gb = float(os.environ.get("TINYGPT_BATCH_MEMORY_GB", "4"))
    exact = os.environ.get("TINYGPT_BATCH_EXACT", "1").strip() != "0"
    return Batchers(memory_budget=int(gb * 1024 ** 3), exact=exact)


def build_demo(models: ModelCache | None = None, default_model: str = "gpt2",
               sessions: SessionStore | None = None, batchers: Batchers | None | str = "env") -> gr.Blocks:
    """Assemble every tab around one shared, read-only model cache and one per-user session store.
    batchers: shared by the tabs that decode ("env" = as TINYGPT_BATCHING says, None = no batching)."""
    models = models or ModelCache()
    sessions = sessions or SessionStore()
    batchers = make_batchers() if batchers == "env" else batchers
    # delete_cache: uploads and downloads in Gradio's cache are deleted an hour after they were written
    with gr.Blocks(title="TinyGPT Lab", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# 🔬 TinyGPT Lab\nOpen up a GPT and see how it works: every number on these tabs is computed"
                    " live from the model.")
        registry.header(sessions)  # lecture-mode toggle + the note shown when a link had parameters we ignored
        # Tabs are grouped as a lecture is, so the top bar stays short enough to read on a projector.
        with gr.Tabs(elem_id="groups"):
            coursemap.build()
            with gr.Tab("Generate", id="generate"), gr.Tabs():
                sampling.build(models, default_model, batchers)
                pruning.build(models, default_model, batchers)
            with gr.Tab("Inside the model", id="inside"), gr.Tabs():
                embeddings.build(models, default_model)
                attention.build(models, default_model)
                positions.build(models, default_model)
            with gr.Tab("Train", id="training"), gr.Tabs():
                train.build(sessions)
                finetune.build(models, sessions, default_model)
            with gr.Tab("Compute & efficiency", id="compute"), gr.Tabs():
                calculator.build()
                efficiency.build(models, sessions, default_model)
            with gr.Tab("Beyond pretraining", id="beyond"), gr.Tabs():
                scaling.build(sessions)
                alignment.build(models, sessions, default_model)
        registry.install(demo)  # after the last tab: a link's state is restored on load; course-map buttons work

        released = demo.released_sessions = GradioSessions(demo)  # Gradio's per-visitor state, released

        async def end_session(request: gr.Request):
            await asyncio.to_thread(sessions.drop, request)  # free this user's fine-tuned / trained models
            await released.close(getattr(request, "session_hash", None))

        demo.unload(end_session)
    gpu.wrap_handlers(demo)  # ZeroGPU hardware only: the GPU-heavy handlers borrow the GPU per call
    demo.queue(default_concurrency_limit=1)
    return plain_errors(demo)  # every bad input, through the page or the API, answered in one plain sentence


def launch_kwargs() -> dict:
    # show_error: an unexpected exception reaches the browser/API client as its one-line message (never a
    # traceback) instead of a generic "error" with no explanation.
    # max_threads: a streaming handler holds a worker thread while it waits for its next token; with batching a
    # whole lecture hall is in the Sampling handler at once (Gradio's default of 40 would queue the rest).
    # state_session_capacity: a backstop for Gradio's per-visitor state (GradioSessions releases it on close)
    return dict(css=CSS, theme=gr.themes.Soft(), footer_links=["api"], show_error=True, max_threads=MAX_THREADS,
                state_session_capacity=STATE_SESSIONS)


if __name__ == "__main__":
    # TINYGPT_MODEL picks the start-up model (default gpt2; offline it falls back to the embedded model).
    demo = build_demo(default_model=os.environ.get("TINYGPT_MODEL", "gpt2"))
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), **launch_kwargs())
