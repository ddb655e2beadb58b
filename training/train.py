"""Fine-tune the embedding model with the seed model's recipe (docs/TRAINING.md).

    pairs → sentence-transformers' trainer (MultipleNegativesRankingLoss, no-duplicates batches)
    → the model folder (+ model card) → training_args.json → evaluation.json (dense and hybrid
    retrieval before and after, measured by ingesting the corpus into a temporary embedded store)

Checkpoints go to ``OUTPUT/checkpoints`` (the last one is kept) so an interrupted run continues with
``resume=True``. The retrieval measured before and after is ``training.evaluation``'s.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from ingest.chunking import ChunkingParams
from ingest.sources import Source
from services.embedding import Embedder
from services.models import LINEAGE_FILE
from services.settings import Settings
from training.evaluation import (
    EVAL_K,
    EVALUATION_FILE,
    EmbeddingProgress,
    EvalSet,
    evaluate_model,
    load_before,
    with_deltas,
)
from training.pairs import CorpusPairs, TrainingPair, corpus_pairs, held_out_ayat, pairs_fingerprint

CHECKPOINTS = "checkpoints"
ARGS_FILE = "training_args.json"

StepProgress = Callable[[int, int, float | None], None]  # (step, total steps, latest logged loss)


class TrainingError(ValueError):
    """A run that cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class Recipe:
    """The seed model's recipe; every field can be overridden (``tafsir train --help``)."""

    epochs: float = 3.0
    batch_size: int = 8
    learning_rate: float = 5e-5
    warmup_steps: float = 0  # steps, or a fraction of all steps when below 1
    scheduler: Literal["linear", "constant", "cosine"] = "linear"
    scale: float = 20.0  # MultipleNegativesRankingLoss scale over cosine similarity (temperature 0.05)
    seed: int = 42
    max_steps: int | None = None  # stop early (smoke runs); None trains for `epochs`
    save_steps: int = 200  # a checkpoint every n steps, and at the end
    logging_steps: int = 10  # the loss is averaged over this many steps
    # Fixed by the recipe: cosine similarity, and batches without duplicate texts (a duplicate would be
    # an in-batch "negative" identical to the positive).
    similarity: Literal["cos_sim"] = "cos_sim"
    batch_sampler: Literal["no_duplicates"] = "no_duplicates"


class TrainingReporter(Protocol):
    """What a front end sees of a run: messages, the embedding progress of evaluation, training steps."""

    def message(self, text: str) -> None: ...

    def embedding(self) -> AbstractContextManager[EmbeddingProgress | None]: ...

    def training(self) -> AbstractContextManager[StepProgress | None]: ...


class QuietReporter:
    def message(self, text: str) -> None:
        pass

    def embedding(self) -> AbstractContextManager[EmbeddingProgress | None]:
        return nullcontext(None)

    def training(self) -> AbstractContextManager[StepProgress | None]:
        return nullcontext(None)


@dataclass
class TrainingResult:
    output: Path
    steps: int  # the optimizer steps the model has had, counting those before a resume
    steps_run: int  # the steps this run took
    seconds: float  # the trainer's whole run: setup, steps, checkpoints
    seconds_per_step: float  # between the first and the last step's end: the pace of a longer run
    losses: list[tuple[int, float]]  # (step, loss averaged over the logging window), from the first step
    evaluation: dict[str, Any] | None = None
    resumed_from: str | None = None


def pairs_from_corpus(settings: Settings, source: Source, holdout: Sequence[str | Path] = ()) -> CorpusPairs:
    """(translation, tafsir chunk) pairs from ``source``, chunked as ingest chunks it with the model
    ``settings.embedding_model``, leaving out every ayah labelled relevant in the ``holdout`` query files."""
    embedder = Embedder(settings)
    params = ChunkingParams(embedder.max_tokens, settings.chunk_overlap, embedder.reserved_tokens)
    return corpus_pairs(source.ayat, embedder.tokenizer, params, held_out_ayat(holdout))


# --- the run ----------------------------------------------------------------------------------------


def _checkpoints(output: Path) -> list[Path]:
    folder = output / CHECKPOINTS
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def _check_output(output: Path, resume: bool, recipe: Recipe) -> None:
    checkpoints = _checkpoints(output)
    if resume:
        if not checkpoints:
            raise TrainingError(
                f"--resume: {output / CHECKPOINTS} holds no checkpoint to continue from; run without --resume"
            )
        state = checkpoints[-1] / "trainer_state.json"
        step = json.loads(state.read_text()).get("global_step", 0) if state.is_file() else 0
        if recipe.max_steps is not None and step >= recipe.max_steps:
            # transformers would take one more step past max_steps here rather than none.
            raise TrainingError(
                f"--resume: {checkpoints[-1].name} is already at step {step} of --max-steps {recipe.max_steps}: "
                "nothing left to train; raise --max-steps to train further"
            )
        return
    if checkpoints:
        raise TrainingError(
            f"{output} holds checkpoints of an earlier run (last: {checkpoints[-1].name}): pass --resume to "
            "continue it, or choose another --output"
        )
    if (output / "modules.json").is_file():
        raise TrainingError(f"{output} already holds a trained model: choose another --output, or remove the folder")


# What a resumed run must share with the interrupted one; max_steps may grow, save/log cadence may change.
_RESUME_MAY_CHANGE = ("max_steps", "save_steps", "logging_steps")
_RESUME_MUST_MATCH = (
    "base_model",
    "base_model_identity",
    "pairs_fingerprint",
    "pairs",
    "max_seq_length",
    *(f.name for f in fields(Recipe) if f.name not in _RESUME_MAY_CHANGE),
)


def _check_resumable(output: Path, arguments: dict[str, Any]) -> None:
    path = output / ARGS_FILE
    if not path.is_file():
        return
    recorded = json.loads(path.read_text()).get("arguments", {})
    differing = [
        f"{key}: {recorded.get(key)!r} then, {arguments.get(key)!r} now"
        for key in _RESUME_MUST_MATCH
        if key in recorded and recorded.get(key) != arguments.get(key)
    ]
    if differing:
        raise TrainingError(
            f"--resume: the checkpoints in {output / CHECKPOINTS} come from a run with other settings ("
            + "; ".join(differing)
            + "): use the same pairs and recipe, or choose another --output"
        )


class _StepReporter:
    """Forwards each optimizer step and the latest logged loss to the front end; keeps the loss log."""

    def __init__(self, on_step: StepProgress | None) -> None:
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            # The trainer logs after on_step_end (DefaultFlowCallback has set should_log by then): a step
            # that logs is reported from on_log, with its own loss, and every other step right away.
            def on_step_end(self, args, state, control, **kwargs):
                outer.step_ends.append((state.global_step, time.perf_counter()))
                if not control.should_log:
                    outer.report(state.global_step, state.max_steps)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    outer.losses.append((state.global_step, float(logs["loss"])))
                    outer.report(state.global_step, state.max_steps)

        self.on_step = on_step
        self.losses: list[tuple[int, float]] = []
        self.step_ends: list[tuple[int, float]] = []  # (step, time): the first and last give the pace
        self.callback = Callback()

    def seconds_per_step(self, fallback: float) -> float:
        if len(self.step_ends) < 2:
            return fallback
        (first, started), (last, ended) = self.step_ends[0], self.step_ends[-1]
        return (ended - started) / (last - first)

    def report(self, step: int, total: int) -> None:
        if self.on_step is not None:
            self.on_step(step, total, self.losses[-1][1] if self.losses else None)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    tmp.replace(path)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Our reporter shows progress and loss; the libraries' own bars and info logs would interleave."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def train(
    pairs: Sequence[TrainingPair],
    output: str | Path,
    settings: Settings,
    recipe: Recipe | None = None,
    *,
    resume: bool = False,
    eval_sets: Sequence[EvalSet] = (),
    eval_source: Source | None = None,
    data: dict[str, Any] | None = None,
    reporter: TrainingReporter | None = None,
) -> TrainingResult:
    """Fine-tune ``settings.embedding_model`` on ``pairs`` and save it to ``output``.

    ``max_seq_length`` is the chunk limit (TAFSIR_CHUNK_TOKENS, capped at the model's maximum), so the
    model trains on whole chunks, as ingest embeds them. ``data`` describes where the pairs came from
    and is recorded in training_args.json. With ``eval_sets``, retrieval on ``eval_source`` is measured
    with the base model first and the trained model last, and written to evaluation.json.
    """
    recipe = recipe or Recipe()
    reporter = reporter or QuietReporter()
    output = Path(output)
    if not pairs:
        raise TrainingError("no training pairs")
    if eval_sets and eval_source is None:
        raise TrainingError("evaluation needs a corpus to ingest (eval_source)")
    _check_output(output, resume, recipe)

    base = Embedder(settings)
    arguments = {
        "base_model": settings.embedding_model,
        "base_model_identity": base.identity,
        "pairs": len(pairs),
        "pairs_fingerprint": pairs_fingerprint(pairs),
        "max_seq_length": base.max_tokens,
        **asdict(recipe),
    }
    if resume:
        _check_resumable(output, arguments)
    output.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "arguments": arguments,
        "data": data or {},
        "eval_queries": [s.path for s in eval_sets],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": None,
    }
    _write_json(output / ARGS_FILE, record)

    before = None
    if eval_sets:
        before = load_before(output, base.identity, eval_sets)
        if before is None:
            reporter.message(f"evaluating the base model {settings.embedding_model!r} (dense and hybrid retrieval)")
            with reporter.embedding() as progress:
                before = evaluate_model(
                    settings, settings.embedding_model, eval_source, eval_sets, k=EVAL_K, progress=progress
                )
            # Written now so that a resumed run does not measure the base model again.
            _write_json(output / EVALUATION_FILE, {"base_model": base.identity, "before": before, "after": None})

    with _quiet_transformers():
        result = _fit(pairs, output, base, recipe, resume, reporter)
    record["result"] = {
        "steps": result.steps,
        "steps_run": result.steps_run,
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds_per_step, 3),
        "resumed_from": result.resumed_from,
        "first_loss": result.losses[0][1] if result.losses else None,
        "last_loss": result.losses[-1][1] if result.losses else None,
        "losses": result.losses,
    }
    record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_json(output / ARGS_FILE, record)

    if eval_sets:
        reporter.message(f"evaluating the trained model {output} (dense and hybrid retrieval)")
        with reporter.embedding() as progress:
            after = evaluate_model(settings, str(output), eval_source, eval_sets, k=EVAL_K, progress=progress)
        result.evaluation = {
            "base_model": base.identity,
            "model": str(output),
            "k": EVAL_K,
            "corpus": f"{eval_source.origin} ({eval_source.edition}, {len(eval_source.ayat)} ayat)",
            "queries": with_deltas(before or {}, after),
        }
        _write_json(output / EVALUATION_FILE, result.evaluation)
    return result


def _hub_id(embedder: Embedder) -> str | None:
    """The base model's hub id, for the model card: known for bundled models and hub ids, not folders."""
    return embedder.source.name if embedder.source.kind in ("bundle", "hub") else None


def _fit(
    pairs: Sequence[TrainingPair],
    output: Path,
    base: Embedder,
    recipe: Recipe,
    resume: bool,
    reporter: TrainingReporter,
) -> TrainingResult:
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from sentence_transformers.util import cos_sim
    from transformers import PrinterCallback

    model = base.model  # max_seq_length already raised to the chunk limit
    card = model.model_card_data
    card.local_files_only = True  # no hub lookups for the card: these machines are offline
    card.language = ["id"]
    hub_id = _hub_id(base)
    if hub_id:  # set directly: set_base_model() would ask the hub to confirm it
        card.base_model = hub_id
    card.model_name = f"{hub_id or base.setting} fine-tuned on tafsir pairs (tafsir-rag)"
    dataset = Dataset.from_dict({"sentence_0": [p.query for p in pairs], "sentence_1": [p.passage for p in pairs]})
    loss = MultipleNegativesRankingLoss(model, scale=recipe.scale, similarity_fct=cos_sim)
    profile = base.profile
    args = SentenceTransformerTrainingArguments(
        # The model's prompts, as ingest and queries use them (E5: "query: " / "passage: ").
        prompts={"sentence_0": profile.query_prefix, "sentence_1": profile.document_prefix}
        if profile.query_prefix or profile.document_prefix
        else None,
        output_dir=str(output / CHECKPOINTS),
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        max_steps=recipe.max_steps if recipe.max_steps is not None else -1,
        warmup_steps=recipe.warmup_steps,
        lr_scheduler_type=recipe.scheduler,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        seed=recipe.seed,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=1,  # resuming needs only the last one
        logging_strategy="steps",
        logging_steps=recipe.logging_steps,
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),  # only a GPU gains; on CPU torch warns about it
        use_cpu=base.device == "cpu",
    )
    steps = _StepReporter(None)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[steps.callback]
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; our reporter shows the loss
    resumed_from = str(_checkpoints(output)[-1]) if resume else None
    if resumed_from:
        reporter.message(f"resuming from {resumed_from}")
    started = time.perf_counter()
    with reporter.training() as on_step:
        steps.on_step = on_step
        trainer.train(resume_from_checkpoint=resumed_from)
    seconds = time.perf_counter() - started
    global_step = trainer.state.global_step
    # The whole curve: a resumed trainer's state carries the log of the steps before the checkpoint.
    losses = [(int(log["step"]), float(log["loss"])) for log in trainer.state.log_history if "loss" in log]
    first_step = int(Path(resumed_from).name.split("-")[-1]) if resumed_from else 0
    model.save_pretrained(str(output))  # with sentence-transformers' model card (README.md)
    # The folder inherits its base's facts (prompts, fusion: services/models.py) when TAFSIR_EMBEDDING_MODEL
    # points at it.
    _write_json(output / LINEAGE_FILE, {"base": profile.name or base.identity, "base_identity": base.identity})
    del trainer, loss
    gc.collect()
    return TrainingResult(
        output=output,
        steps=global_step,
        steps_run=global_step - first_step,
        seconds=seconds,
        seconds_per_step=steps.seconds_per_step(seconds / max(1, global_step - first_step)),
        losses=losses,
        resumed_from=resumed_from,
    )
