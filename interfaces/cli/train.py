"""``tafsir train``: fine-tuning with the seed model's recipe, and its progress on the console."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from interfaces.cli.common import (
    EXIT_INPUT,
    embedding_progress,
    every,
    fail,
    load_settings,
    print_json,
    progress_bar,
    stderr,
    stdout,
)


@contextmanager
def _training_progress():
    """Training steps on stderr: a live bar with the loss, s/step and ETA on a terminal, plain lines in logs."""
    from rich.progress import TextColumn

    started = time.monotonic()
    first: list[int | None] = [None]  # the step a resumed run starts from: its speed counts only new steps

    def speed(step: int) -> str:
        if first[0] is None:
            first[0] = step - 1
        done = step - first[0]
        return f"{(time.monotonic() - started) / done:.2f} s/step" if done > 0 else "-"

    if not stderr.is_terminal:
        due = every(10)

        def log(step: int, total: int, loss: float | None) -> None:
            if due(step in (1, total)):
                shown = f"{loss:.4f}" if loss is not None else "-"
                print(f"step {step}/{total} loss {shown} ({speed(step)})", file=sys.stderr, flush=True)

        yield log
        return
    with progress_bar("training", TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}")) as bar:
        task = bar.add_task("train", total=None, loss="-", speed="-")

        def update(step: int, total: int, loss: float | None) -> None:
            shown = f"{loss:.4f}" if loss is not None else "-"
            bar.update(task, completed=step, total=total, loss=shown, speed=speed(step))

        yield update


class _TrainingReporter:
    def message(self, text: str) -> None:
        stderr.print(text, highlight=False, soft_wrap=True)

    def embedding(self):
        return embedding_progress()

    def training(self):
        return _training_progress()


def train(
    output: Annotated[
        Path, typer.Option("--output", help="Folder for the model, its card, training_args.json, evaluation.json.")
    ],
    pairs: Annotated[
        Path | None, typer.Option("--pairs", help="Pairs file: JSONL or CSV with columns sentence_0, sentence_1.")
    ] = None,
    from_corpus: Annotated[
        bool, typer.Option("--from-corpus", help="Derive pairs from the built-in edition: translation -> tafsir chunk.")
    ] = False,
    holdout: Annotated[
        list[Path] | None,
        typer.Option("--holdout", help="Query file whose labelled ayat --from-corpus leaves out (repeatable)."),
    ] = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="Model to start from (default TAFSIR_EMBEDDING_MODEL).")
    ] = None,
    epochs: Annotated[float | None, typer.Option(min=0, help="Epochs (default 3).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="Pairs per batch (default 8).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0, help="Learning rate (default 5e-5).")] = None,
    warmup_steps: Annotated[
        float | None, typer.Option(min=0, help="Warmup steps, or a fraction of all steps below 1 (default 0).")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(help="linear, constant or cosine (default linear).")] = None,
    scale: Annotated[float | None, typer.Option(min=0, help="Loss scale over cosine similarity (default 20).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 42).")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps (smoke runs).")] = None,
    max_seq_length: Annotated[
        int | None, typer.Option(min=16, help="Token limit (default the chunk limit, TAFSIR_CHUNK_TOKENS).")
    ] = None,
    save_steps: Annotated[int | None, typer.Option(min=1, help="Checkpoint every n steps (default 200).")] = None,
    logging_steps: Annotated[int | None, typer.Option(min=1, help="Loss averaged over n steps (default 10).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --output.")] = False,
    eval_queries: Annotated[
        list[Path] | None,
        typer.Option("--eval-queries", help="Query file: retrieval before and after -> evaluation.json (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Fine-tune the embedding model on (question or ayah text, tafsir) pairs with the seed model's recipe."""
    from pydantic import ValidationError

    from ingest.builtin import read_builtin
    from services.evaluation import QueryFileError, load_queries
    from services.model_source import EmbeddingModelError
    from training.evaluation import EvalSet
    from training.pairs import PairsFileError, read_pairs
    from training.train import Recipe, TrainingError, pairs_from_corpus
    from training.train import train as run_training

    if (pairs is None) == (not from_corpus):
        raise fail("give either --pairs FILE or --from-corpus", EXIT_INPUT)
    if holdout and not from_corpus:
        raise fail("--holdout leaves ayat out of --from-corpus pairs; a --pairs file is used as it is", EXIT_INPUT)
    if scheduler is not None and scheduler not in ("linear", "constant", "cosine"):
        raise fail(f"--scheduler {scheduler!r}: expected linear, constant or cosine", EXIT_INPUT)
    settings = load_settings()
    update: dict[str, Any] = {}
    if base_model is not None:
        update["embedding_model"] = base_model
    if max_seq_length is not None:
        update["chunk_tokens"] = max_seq_length
    try:
        settings = type(settings).model_validate(settings.model_dump() | update)
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise fail(f"--max-seq-length {max_seq_length}: {problems}", EXIT_INPUT) from None
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": lr,
        "warmup_steps": warmup_steps,
        "scheduler": scheduler,
        "scale": scale,
        "seed": seed,
        "max_steps": max_steps,
        "save_steps": save_steps,
        "logging_steps": logging_steps,
    }
    recipe = Recipe(**{key: value for key, value in overrides.items() if value is not None})
    reporter = _TrainingReporter()
    try:
        eval_sets = [EvalSet(str(path), load_queries(path)) for path in eval_queries or []]
        corpus = read_builtin() if from_corpus or eval_sets else None
        if pairs is not None:
            training_pairs = read_pairs(pairs)
            data: dict[str, Any] = {"pairs_file": str(pairs), "pairs": len(training_pairs)}
        else:
            derived = pairs_from_corpus(settings, corpus, holdout or [])
            training_pairs = derived.pairs
            data = {
                "from_corpus": f"{corpus.origin}, edition {corpus.edition}",
                "pairs": len(training_pairs),
                "ayat": derived.ayat,
                "held_out_ayat": derived.held_out,
                "holdout_files": [str(p) for p in holdout or []],
            }
            reporter.message(f"{len(training_pairs)} pairs from {derived.ayat} ayat; {derived.held_out} ayat held out")
            labelled = {key for s in eval_sets for q in s.queries for key in q.relevant}
            leaked = labelled & {p.ayah for p in training_pairs}
            if leaked:
                reporter.message(
                    f"[yellow]warning:[/] {len(leaked)} ayat labelled in --eval-queries are in the training pairs; "
                    "pass the same files with --holdout for an honest evaluation"
                )
        result = run_training(
            training_pairs,
            output,
            settings,
            recipe,
            resume=resume,
            eval_sets=eval_sets,
            eval_source=corpus,
            data=data,
            reporter=reporter,
        )
    except EmbeddingModelError as exc:
        hint = f"--base-model {base_model!r}: " if base_model is not None else ""
        raise fail(f"{hint}{exc}", EXIT_INPUT) from None
    except (PairsFileError, QueryFileError, TrainingError) as exc:
        raise fail(str(exc), EXIT_INPUT) from None
    summary = {
        "output": str(result.output),
        "pairs": len(training_pairs),
        "steps": result.steps,
        "steps_run": result.steps_run,
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds_per_step, 3),
        "first_loss": result.losses[0][1] if result.losses else None,
        "last_loss": result.losses[-1][1] if result.losses else None,
        "resumed_from": result.resumed_from,
        "evaluation": result.evaluation["queries"] if result.evaluation else None,
    }
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"train → {result.output}", show_header=False)
    for key, value in summary.items():
        if key != "evaluation" and value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) and "loss" in key else str(value))
    stdout.print(table)
    for path, modes in (summary["evaluation"] or {}).items():
        scores = Table(title=f"{path} (before → after)")
        scores.add_column("mode")
        metrics = [m for m in next(iter(modes.values()))["after"] if m not in ("k", "queries")]
        for metric in metrics:
            scores.add_column(metric)
        for mode, report in modes.items():
            before = report["before"] or {}
            scores.add_row(mode, *(f"{before.get(m, float('nan')):.3f} → {report['after'][m]:.3f}" for m in metrics))
        stdout.print(scores)
    stdout.print(f"use it: TAFSIR_EMBEDDING_MODEL={result.output} tafsir ingest --rebuild", highlight=False)
