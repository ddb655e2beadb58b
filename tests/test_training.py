"""Fine-tuning (training/): pairs files, corpus pairs with a holdout, the seed recipe, resume, evaluation,
and using the trained model. Real trainer, real store, real CLI; a tiny random model where no semantics
are needed."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest

from ingest.builtin import read_builtin
from ingest.chunking import ChunkingParams
from ingest.sources import Source
from services.embedding import Embedder
from services.settings import Settings
from tests.conftest import tafsir_cmd
from tests.test_cli import write_jsonl
from tests.tiny_model import build_tiny_model
from training.evaluation import EvalSet
from training.pairs import PairsFileError, TrainingPair, corpus_pairs, held_out_ayat, read_pairs
from training.train import Recipe, TrainingError, train

pytestmark = [pytest.mark.slow]

# The seed recipe with a higher learning rate: a random 1-layer model must learn visibly in 8 steps.
FAST = Recipe(learning_rate=1e-3, epochs=2, logging_steps=1, save_steps=4)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two cores, shared: one torch thread trains a tiny model faster than two that fight."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus() -> Source:
    return read_builtin()


@pytest.fixture(scope="module")
def pairs(corpus) -> list[TrainingPair]:
    """32 (translation, tafsir) pairs from surahs 100-103 (short tafsir: fast steps)."""
    return [TrainingPair(a.translation, a.text) for a in corpus.ayat if a.surah >= 100][:32]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, pairs):
    """The tiny model trained for 8 steps (2 epochs of 4 batches), once for the module."""
    output = tmp_path_factory.mktemp("trained") / "model"
    return output, train(pairs, output, tiny_settings(tiny_model), FAST, data={"pairs_file": "test"})


class Killed(Exception):
    pass


class KilledAfter:
    """A reporter that stops the run the way a kill would, right after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def message(self, text: str) -> None:
        pass

    def embedding(self):
        return nullcontext(None)

    @contextmanager
    def training(self):
        def on_step(step: int, total: int, loss: float | None) -> None:
            if step == self.step:
                raise Killed(step)

        yield on_step


def tiny_settings(model: Path | str, **values) -> Settings:
    return Settings(_env_file=None, embedding_model=str(model), device="cpu", **values)


def write_queries(path: Path, labels: dict[str, list[tuple[int, int]]]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for qid, ayat in labels.items():
            row = {"qid": qid, "query": f"pertanyaan {qid}", "relevant": [[s, a, 2] for s, a in ayat]}
            f.write(json.dumps(row) + "\n")
    return path


def write_pairs_jsonl(path: Path, pairs: list[TrainingPair]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps({"sentence_0": p.query, "sentence_1": p.passage}, ensure_ascii=False) + "\n")
    return path


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(tafsir_cmd(*args), env=env, capture_output=True, text=True, timeout=300)


# --- pairs files -------------------------------------------------------------------------------------


def test_jsonl_and_csv_pairs_files_give_the_same_pairs(tmp_path, pairs):
    jsonl = write_pairs_jsonl(tmp_path / "pairs.jsonl", pairs)
    with (tmp_path / "pairs.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence_0", "sentence_1", "source"])  # extra columns are ignored
        writer.writerows([p.query, p.passage, "kemenag"] for p in pairs)
    assert read_pairs(jsonl) == read_pairs(tmp_path / "pairs.csv") == pairs


def test_a_malformed_jsonl_pairs_file_is_refused_naming_line_and_column(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"sentence_0": "Siapa Thalut?", "sentence_1": "(Thalut) ..."}\n'
        '{"sentence_0": "Siapa Jalut?", "sentence_1": }\n'
        '{"sentence_0": "Qarun"}\n'
        '{"sentence_0": "", "sentence_1": 3}\n',
        encoding="utf-8",
    )
    with pytest.raises(PairsFileError) as refused:
        read_pairs(path)
    message = str(refused.value)
    assert f"{path}:2:46: malformed JSON: Expecting value" in message
    assert f"{path}:3: column 'sentence_1': missing" in message
    assert f"{path}:4: column 'sentence_0': empty text" in message
    assert f"{path}:4: column 'sentence_1': expected text, got 3" in message


def test_a_pairs_line_json_cannot_hold_is_refused_naming_its_line(tmp_path):
    """The JSONL reader's guards (services/jsonl.py): json raises ValueError or RecursionError, not
    JSONDecodeError, for a number over Python's digit limit or nesting deeper than the recursion limit."""
    path = tmp_path / "pairs.jsonl"
    good = '{"sentence_0": "Siapa Thalut?", "sentence_1": "(Thalut) ..."}'
    path.write_text(f'{good}\n{{"sentence_0": {"9" * 5000}}}\n{"[" * 100_000}\n', encoding="utf-8")
    with pytest.raises(PairsFileError) as refused:
        read_pairs(path)
    message = str(refused.value)
    assert f"{path}:2: malformed JSON: a number with too many digits" in message
    assert f"{path}:3: malformed JSON: nested too deeply" in message


def test_a_malformed_csv_pairs_file_is_refused_naming_line_and_column(tmp_path):
    header_wrong = tmp_path / "header.csv"
    header_wrong.write_text("question,sentence_1\nSiapa?,Dia.\n", encoding="utf-8")
    with pytest.raises(PairsFileError, match=r"header\.csv:1: column 'sentence_0': the header row must name"):
        read_pairs(header_wrong)

    short_row = tmp_path / "short.csv"
    short_row.write_text('sentence_0,sentence_1\nSiapa?,Dia.\n"Dua\nbaris",Ya.\nHanya satu\n', encoding="utf-8")
    with pytest.raises(PairsFileError, match=r"short\.csv:5: column 'sentence_1': missing"):
        read_pairs(short_row)


def test_the_cli_refuses_a_malformed_pairs_file_before_loading_a_model(cli_env, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"sentence_0": "a", "sentence_1": "b"}\n{"sentence_0": "a" "sentence_1": "b"}\n')
    result = run(cli_env, "train", "--pairs", str(path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{path}:2:20: malformed JSON: Expecting ',' delimiter" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


# --- pairs from the corpus ----------------------------------------------------------------------------


def test_corpus_pairs_leave_out_every_ayah_labelled_in_the_holdout_files(tmp_path, corpus, tiny_model):
    questions = write_queries(tmp_path / "q.jsonl", {"kursi": [(2, 255)], "ikhlas": [(112, a) for a in range(1, 5)]})
    translations = write_queries(tmp_path / "t.jsonl", {"t1:1": [(1, 1)], "t2:255": [(2, 255)]})
    held_out = held_out_ayat([questions, translations])
    assert held_out == {(2, 255), (112, 1), (112, 2), (112, 3), (112, 4), (1, 1)}

    embedder = Embedder(tiny_settings(tiny_model))
    params = ChunkingParams(embedder.max_tokens, 64, embedder.reserved_tokens)
    derived = corpus_pairs(corpus.ayat, embedder.tokenizer, params, held_out)

    assert {p.ayah for p in derived.pairs}.isdisjoint(held_out)
    assert {p.ayah for p in derived.pairs} == {(a.surah, a.ayah) for a in corpus.ayat} - held_out
    assert (derived.held_out, derived.ayat) == (6, len(corpus.ayat) - 6)
    by_key = {(a.surah, a.ayah): a for a in corpus.ayat}
    assert all(p.query == by_key[p.ayah].translation and p.passage in by_key[p.ayah].text for p in derived.pairs)
    # Long ayat give one pair per chunk, each within the model's limit.
    assert len(derived.pairs) > derived.ayat
    assert max(embedder.count_tokens(p.passage) for p in derived.pairs) <= embedder.max_tokens


def test_the_cli_trains_from_the_corpus_without_the_held_out_ayat(cli_env, tmp_path):
    holdout = write_queries(tmp_path / "q.jsonl", {"kursi": [(2, 255)], "ikhlas": [(112, a) for a in range(1, 5)]})
    output = tmp_path / "out"
    args = ("train", "--from-corpus", "--holdout", str(holdout), "--max-steps", "1", "--output", str(output))
    result = run(cli_env, *args, "--json")
    assert result.returncode == 0, result.stderr
    assert "ayat; 5 ayat held out" in result.stderr
    data = json.loads((output / "training_args.json").read_text())["data"]
    assert (data["held_out_ayat"], data["ayat"], data["holdout_files"]) == (5, 6231, [str(holdout)])
    assert data["pairs"] == json.loads(result.stdout)["pairs"] > 6231  # long ayat give a pair per chunk


# --- the trainer --------------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_saves_a_model_that_loads_and_embeds(trained, tiny_model, pairs):
    from sentence_transformers import SentenceTransformer

    output, result = trained
    assert result.steps == 8  # 32 pairs / batch 8 x 2 epochs
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 8 and sum(losses[-2:]) / 2 < losses[0] / 2

    embedder = Embedder(tiny_settings(output))
    vectors = embedder.encode_documents(["Allah Yang Maha Esa", pairs[0].passage])
    assert vectors.shape == (2, 32) and embedder.model.max_seq_length == 512
    base = SentenceTransformer(str(tiny_model), device="cpu").encode(["Allah Yang Maha Esa"])
    assert abs(vectors[0] - base[0]).max() > 1e-3  # the weights moved

    assert "MultipleNegativesRankingLoss" in (output / "README.md").read_text()  # sentence-transformers' card
    record = json.loads((output / "training_args.json").read_text())
    arguments = record["arguments"]
    assert arguments["batch_size"] == 8 and arguments["scale"] == 20.0 and arguments["seed"] == 42
    assert arguments["scheduler"] == "linear" and arguments["warmup_steps"] == 0
    assert arguments["batch_sampler"] == "no_duplicates" and arguments["similarity"] == "cos_sim"
    assert arguments["learning_rate"] == 1e-3 and arguments["max_seq_length"] == 512 and arguments["pairs"] == 32
    assert record["data"] == {"pairs_file": "test"} and record["result"]["steps"] == 8


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model, pairs, trained):
    _, straight = trained
    settings = tiny_settings(tiny_model)
    output = tmp_path / "interrupted"
    with pytest.raises(Killed):
        train(pairs, output, settings, FAST, reporter=KilledAfter(6))  # a checkpoint every 4 steps
    assert [p.name for p in (output / "checkpoints").iterdir()] == ["checkpoint-4"]

    resumed = train(pairs, output, settings, FAST, resume=True)
    assert resumed.resumed_from == str(output / "checkpoints" / "checkpoint-4")
    assert (resumed.steps, resumed.steps_run) == (8, 4)
    # Optimizer, scheduler, sampler and RNG state come back: steps 5-8 are the uninterrupted run's steps 5-8,
    # and the loss log holds the steps before the checkpoint too.
    assert [step for step, _ in resumed.losses] == list(range(1, 9))
    assert [loss for _, loss in resumed.losses] == pytest.approx([loss for _, loss in straight.losses], rel=1e-4)


def test_a_second_run_into_the_same_folder_must_resume_with_the_same_pairs_and_recipe(tmp_path, tiny_model, pairs):
    settings = tiny_settings(tiny_model)
    output = tmp_path / "run"
    train(pairs, output, settings, Recipe(**{**FAST.__dict__, "max_steps": 1}))

    with pytest.raises(TrainingError, match="pass --resume to continue it, or choose another --output"):
        train(pairs, output, settings, FAST)
    with pytest.raises(TrainingError, match=r"learning_rate: 0\.001 then, 5e-05 now"):
        train(pairs, output, settings, Recipe(), resume=True)
    with pytest.raises(TrainingError, match="pairs_fingerprint"):
        train(pairs[:16], output, settings, FAST, resume=True)
    with pytest.raises(TrainingError, match="already at step 1 of --max-steps 1: nothing left to train"):
        train(pairs, output, settings, Recipe(**{**FAST.__dict__, "max_steps": 1}), resume=True)
    with pytest.raises(TrainingError, match="holds no checkpoint"):
        train(pairs, tmp_path / "fresh", settings, FAST, resume=True)
    shutil.rmtree(output / "checkpoints")
    with pytest.raises(TrainingError, match="already holds a trained model"):
        train(pairs, output, settings, FAST)


def test_evaluation_reports_dense_and_hybrid_retrieval_before_and_after(tmp_path, tiny_model, corpus, pairs):
    small = Source(corpus.edition, "test", tuple(a for a in corpus.ayat if a.surah >= 110))
    queries = write_queries(tmp_path / "q.jsonl", {"ikhlas": [(112, 1)], "nas": [(114, 1), (114, 2)]})
    from services.evaluation import load_queries

    output = tmp_path / "trained"
    result = train(
        pairs,
        output,
        tiny_settings(tiny_model),
        Recipe(max_steps=2),
        eval_sets=[EvalSet(str(queries), load_queries(queries))],
        eval_source=small,
    )

    evaluation = json.loads((output / "evaluation.json").read_text())
    assert evaluation == result.evaluation
    assert evaluation["model"] == str(output) and evaluation["base_model"].startswith("model@")
    for mode in ("dense", "hybrid"):
        report = evaluation["queries"][str(queries)][mode]
        for side in ("before", "after"):
            assert report[side]["queries"] == 2 and 0 <= report[side]["ndcg@10"] <= 1
        assert report["change"]["ndcg@10"] == pytest.approx(report["after"]["ndcg@10"] - report["before"]["ndcg@10"])


# --- using it -------------------------------------------------------------------------------------------


def test_ingest_with_a_trained_model_of_another_size_moves_the_alias_to_a_new_collection(
    tmp_path, tiny_model, cli_env, corpus, pairs
):
    source = write_jsonl(tmp_path / "short.jsonl", "test.short", range(112, 115))
    first = run(cli_env, "ingest", "--source", str(source), "--json")
    assert first.returncode == 0, first.stderr
    before = json.loads(first.stdout)
    assert before["dense_size"] == 32

    wider = build_tiny_model(tmp_path / "wider", [a.text for a in corpus.ayat[::7]], dim=48)
    output = tmp_path / "trained"
    train(pairs, output, tiny_settings(wider), Recipe(max_steps=2))

    trained_env = {**cli_env, "TAFSIR_EMBEDDING_MODEL": str(output)}
    refused = run(trained_env, "ingest", "--source", str(source), "--json")  # never mixes two models' vectors
    assert refused.returncode == 2 and "tafsir ingest --rebuild" in refused.stderr
    second = run(trained_env, "ingest", "--source", str(source), "--rebuild", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["rebuilt"] is True
    after = json.loads(run({**cli_env, "TAFSIR_EMBEDDING_MODEL": str(output)}, "status", "--json").stdout)
    assert after["model"].startswith("trained@") and after["vector_size"] == 48
    assert after["collection"] != before["collection"] and after["points"] == before["chunks"]
