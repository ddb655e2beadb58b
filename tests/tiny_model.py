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
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import DistilBertConfig, DistilBertModel, PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer = Tokenizer(
        WordPiece(deterministic_vocab(texts, normalizer, pre_tokenizer, vocab_size), unk_token="[UNK]")
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
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


def deterministic_vocab(texts: Iterable[str], normalizer, pre_tokenizer, size: int) -> dict[str, int]:
    """A WordPiece vocabulary that is the same in every process: the special tokens, every character (alone and
    as a ``##`` continuation), then the most frequent words, ties by the word. The tokenizers library's
    WordPieceTrainer breaks ties between equally frequent merges in hash-map order, which differs between processes:
    the model, hence every cosine, changed from one test run to the next."""
    from collections import Counter

    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({character for word in words for character in word})
    tokens = [*SPECIAL, *characters, *(f"##{c}" for c in characters)]
    known = set(tokens)
    for word, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])):
        if len(tokens) >= size:
            break
        if word not in known:
            tokens.append(word)
            known.add(word)
    return {token: number for number, token in enumerate(tokens)}
