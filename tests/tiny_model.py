"""A tiny random DistilBERT sentence-transformers model with a WordPiece tokenizer trained on the corpus.

For tests that need a real model folder, real tokenizer and real encode, but no semantics: it
builds in about a second and embeds thousands of chunks per second.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_model(folder: Path, texts: Iterable[str], dim: int = 32, vocab_size: int = 2000, seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece
    from transformers import DistilBertConfig, DistilBertModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False)
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        dim=dim,
        n_layers=1,
        n_heads=2,
        hidden_dim=2 * dim,
        max_position_embeddings=512,
    )
    transformer_dir = folder / "hf"
    DistilBertModel(config).save_pretrained(transformer_dir)
    fast.save_pretrained(transformer_dir)
    word = Transformer(str(transformer_dir), max_seq_length=512)
    pooling = Pooling(dim, pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling], device="cpu")
    out = folder / "model"
    model.save(str(out))
    return out
