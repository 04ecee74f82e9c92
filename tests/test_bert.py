"""BERT contextual embeddings (tinygpt.interpret.bert) against transformers' own hidden states, on a random tiny
BertModel with a tiny WordPiece vocabulary saved locally (no network), and the Embeddings tab's BERT option."""
import gradio as gr
import pytest
import torch
import torch.nn.functional as F

from tinygpt.interpret.bert import bert_contextual_similarity, load_bert
from tinygpt.interpret.embeddings import contextual_similarity

WORDS = ("i switched the tv over to another channel boat drifted slowly down river spy used a secret communication "
         "water was deep flooded , . :").split()
SENTENCES = ["I switched the TV over to another channel", "The boat drifted slowly down the river channel",
             "The spy used a secret communication channel"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny_bert")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ed"]) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)  # transformers 5: `vocab` (a file or a dict)
    assert tok.convert_tokens_to_ids("channel") != tok.unk_token_id
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, initializer_range=0.5)  # mixes strongly
    BertModel(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def test_matches_transformers_hidden_states(bert_dir):
    model, tok = load_bert(bert_dir)
    res = bert_contextual_similarity(model, tok, SENTENCES, "channel")
    L = model.config.num_hidden_layers
    assert set(res) == {"word", "sentences", "layers", "cos", "mean_cos", "baseline", "positions"}
    assert res["layers"][0] == "wordpiece (static)" and len(res["layers"]) == L + 2
    assert res["cos"].shape == (L + 2, 3, 3)
    # the reference: transformers' hidden states at the word's position, cosines computed directly
    vecs = []
    for s in SENTENCES:
        enc = tok(s, return_tensors="pt")
        ids = enc["input_ids"][0].tolist()
        pos = len(ids) - 2  # "channel" is the last word, before [SEP]
        assert ids[pos] == tok.convert_tokens_to_ids("channel") and res["positions"][SENTENCES.index(s)] == [pos]
        with torch.no_grad():
            hs = model(**enc, output_hidden_states=True).hidden_states
        vecs.append([model.embeddings.word_embeddings.weight[ids[pos]]] + [h[0, pos] for h in hs])
    for layer in range(L + 2):
        for i in range(3):
            for j in range(3):
                ref = F.cosine_similarity(vecs[i][layer], vecs[j][layer], dim=0)
                assert res["cos"][layer, i, j].item() == pytest.approx(ref.item(), abs=1e-5)
    assert res["mean_cos"][0] == pytest.approx(1.0, abs=1e-6)  # the static row is the same in every sentence
    assert res["mean_cos"][-1] < 0.999  # an encoder's vector depends on the sentence


def test_encoder_reads_right_context_decoder_does_not(bert_dir, models, tiny_dir):
    """Same words before the word, different words after: a causal GPT cannot tell them apart, BERT can."""
    from tabs.embeddings import probe_sentences

    probe = probe_sentences(SENTENCES, "channel")
    assert probe[0] == "The channel, I switched the TV over to another"
    bert, btok = load_bert(bert_dir)
    gpt, gtok = models.get(tiny_dir)
    b = bert_contextual_similarity(bert, btok, probe, "channel")
    g = contextual_similarity(gpt, gtok, probe, "channel")
    assert min(g["mean_cos"]) > 0.9999  # every GPT stage: identical left context -> identical vector
    assert b["mean_cos"][-1] < 0.999


def test_errors_are_plain_sentences(bert_dir):
    model, tok = load_bert(bert_dir)
    with pytest.raises(ValueError, match="does not contain"):
        bert_contextual_similarity(model, tok, ["the boat", "the spy"], "channel")
    with pytest.raises(ValueError, match="at least two"):
        bert_contextual_similarity(model, tok, ["the channel"], "channel")
    with pytest.raises(ValueError, match="Unknown BERT"):
        load_bert("not-a-bert")


def test_embeddings_tab_bert_option(bert_dir, models, tiny_dir, monkeypatch):
    from tabs import embeddings

    fig, md = embeddings.on_contextual(models, tiny_dir, "channel", "\n".join(SENTENCES), bert_dir)
    res = bert_contextual_similarity(*load_bert(bert_dir), SENTENCES, "channel")
    assert fig is not None and f"{res['mean_cos'][-1]:.3f}" in md and "BERT" in md
    assert "Bidirectional encoder vs causal decoder" in md and "identical" in md
    # the GPT default is unchanged
    fig, md = embeddings.on_contextual(models, tiny_dir, "channel", "\n".join(SENTENCES))
    assert "block 0" in md
    # offline: one sentence, no plot, no exception
    import tinygpt.loading

    def unreachable(*a, **k):
        raise ConnectionError("the Hugging Face Hub could not be reached (offline)")

    monkeypatch.setattr(tinygpt.loading, "hub_snapshot", unreachable)
    load_bert.cache_clear()
    fig, md = embeddings.on_contextual(models, tiny_dir, "channel", "\n".join(SENTENCES), "bert-base-uncased")
    assert fig is None and md == embeddings.offline_md("bert-base-uncased") and md.count(".") == 1
    assert "downloaded from the Hugging Face Hub" in md and "offline" in md and "Error" not in md
    with pytest.raises(gr.Error):
        embeddings.on_contextual(models, tiny_dir, "channel", "\n".join(SENTENCES), "not-a-bert")
