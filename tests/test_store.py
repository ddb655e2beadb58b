"""One behavioural suite for both store adapters, in the spirit of qdrant-client's congruence tests.

Every test taking ``store`` runs twice: on the embedded Qdrant Edge store (a folder under tmp_path)
and on the server adapter over qdrant-client's local mode (``":memory:"``, the client API a server
speaks). Edge-only and server-only behaviours follow at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.settings import Settings
from services.store import (
    SPARSE,
    SPARSE_CONTEXT,
    CollectionSpec,
    Hit,
    Mode,
    PointFilter,
    PointToStore,
    SearchRequest,
    SparseUpdate,
    SparseVector,
    StoreError,
    StoreLockedError,
    VectorStore,
    open_store,
)
from services.store.edge import EdgeStore
from services.store.server import ServerStore, call_with_retries

ROOT = Path(__file__).resolve().parent.parent

# Local mode warns that payload indexes do nothing there; on a server they do, so the adapter makes them.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

SPEC = CollectionSpec(dense_size=4, model="test-model@abc", fingerprint="f1")
EDITION = "id.jalalayn"


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    if request.param == "edge":
        opened: VectorStore = EdgeStore(tmp_path / "qdrant")
    else:
        opened = ServerStore(QdrantClient(location=":memory:"), ":memory:")
    yield opened
    opened.close()


def point(
    surah: int,
    ayah: int,
    *,
    dense: list[float] | None = None,
    terms: dict[int, float] | None = None,
    edition: str = EDITION,
    chunk: int = 0,
    text: str = "",
) -> PointToStore:
    terms = terms if terms is not None else {999: 1.0}
    return PointToStore(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{edition}:{surah}:{ayah}:{chunk}")),
        dense=dense if dense is not None else [1.0, 0.0, 0.0, 0.0],
        sparse={SPARSE: SparseVector(indices=sorted(terms), values=[terms[i] for i in sorted(terms)])},
        payload={
            "text": text or f"tafsir {surah}:{ayah}",
            "edition": edition,
            "surah": surah,
            "ayah": ayah,
            "chunk": chunk,
            "content_hash": f"hash-{edition}-{surah}-{ayah}-{chunk}",
        },
    )


def ayat_of(hits: list[Hit]) -> list[tuple[int, int]]:
    return [(hit.payload["surah"], hit.payload["ayah"]) for hit in hits]


def rrf(rankings: list[list[str]], weights: list[float], k: int) -> dict[str, float]:
    """Qdrant's weighted RRF: a point scores 1 / ((rank + 1) / weight + k - 1) in each list, rank from 0."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, point_id in enumerate(ranking):
            scores[point_id] = scores.get(point_id, 0.0) + 1.0 / ((rank + 1) / weight + k - 1)
    return scores


# --- collections -------------------------------------------------------------------------------------


def test_collection_spec_round_trips(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)

    info = store.collection_info("tafsir-a")

    assert info is not None
    assert (info.name, info.spec, info.points) == ("tafsir-a", SPEC, 0)
    assert store.list_collections() == ["tafsir-a"]
    assert store.collection_info("absent") is None


def test_creating_an_existing_collection_fails(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)

    with pytest.raises(StoreError, match="tafsir-a"):
        store.create_collection("tafsir-a", SPEC)


def test_reading_a_missing_collection_names_it_and_suggests_ingest(store: VectorStore) -> None:
    with pytest.raises(StoreError, match=r"'absent'.*tafsir ingest"):
        store.count("absent")
    with pytest.raises(StoreError, match="absent"):
        store.search("absent", SearchRequest(mode=Mode.DENSE, limit=3, dense=[1.0, 0.0, 0.0, 0.0]))
    with pytest.raises(StoreError, match="absent"):
        list(store.iter_hashes("absent"))


# --- points ----------------------------------------------------------------------------------------


def test_upserted_points_are_counted(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)

    store.upsert("tafsir-a", [point(1, 1), point(1, 2), point(2, 1)])

    assert store.count("tafsir-a") == 3
    assert store.collection_info("tafsir-a").points == 3  # type: ignore[union-attr]


def test_upserting_the_same_id_twice_keeps_one_point_with_the_new_payload(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert("tafsir-a", [point(1, 1, text="old text")])

    store.upsert("tafsir-a", [point(1, 1, text="new text")])

    assert store.count("tafsir-a") == 1
    [hit] = store.retrieve("tafsir-a", PointFilter(surahs=[1]))
    assert hit.payload["text"] == "new text"


def test_iter_hashes_filters_by_edition(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    # More than one scroll page (1,000) of one edition, a few of another.
    store.upsert("tafsir-a", [point(1 + n // 300, 1 + n % 300) for n in range(1005)])
    store.upsert("tafsir-a", [point(1, n, edition="id.indonesian") for n in range(1, 4)])

    jalalayn = list(store.iter_hashes("tafsir-a", EDITION))
    indonesian = list(store.iter_hashes("tafsir-a", "id.indonesian"))

    assert len(jalalayn) == 1005
    assert len({stored.id for stored in jalalayn}) == 1005
    assert {stored.edition for stored in jalalayn} == {EDITION}
    assert sorted(stored.content_hash for stored in indonesian) == [f"hash-id.indonesian-1-{n}-0" for n in (1, 2, 3)]
    assert len(list(store.iter_hashes("tafsir-a"))) == 1008


def test_deleted_points_are_gone(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    points = [point(1, 1), point(1, 2), point(1, 3)]
    store.upsert("tafsir-a", points)

    store.delete("tafsir-a", [points[0].id, points[2].id])

    assert [stored.id for stored in store.iter_hashes("tafsir-a")] == [points[1].id]


def test_editions_counts_points_per_edition(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert("tafsir-a", [point(1, n) for n in range(1, 6)])
    store.upsert("tafsir-a", [point(1, n, edition="id.indonesian") for n in range(1, 3)])

    assert store.editions("tafsir-a") == {EDITION: 5, "id.indonesian": 2}


def test_retrieve_returns_points_in_reading_order(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert(
        "tafsir-a",
        [point(2, 1), point(1, 7, chunk=1), point(1, 7, chunk=0), point(1, 3), point(1, 3, edition="id.indonesian")],
    )

    hits = store.retrieve("tafsir-a", PointFilter(surahs=[1, 2]))

    assert [(h.payload["edition"], h.payload["surah"], h.payload["ayah"], h.payload["chunk"]) for h in hits] == [
        ("id.indonesian", 1, 3, 0),
        (EDITION, 1, 3, 0),
        (EDITION, 1, 7, 0),
        (EDITION, 1, 7, 1),
        (EDITION, 2, 1, 0),
    ]
    assert all(hit.score == 0.0 for hit in hits)


# --- search ----------------------------------------------------------------------------------------


def test_dense_search_returns_the_closest_vector_first(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert(
        "tafsir-a",
        [
            point(1, 1, dense=[0.0, 1.0, 0.0, 0.0]),
            point(1, 2, dense=[1.0, 0.1, 0.0, 0.0]),
            point(1, 3, dense=[1.0, 1.0, 0.0, 0.0]),
            point(1, 4, dense=[-1.0, 0.0, 0.0, 0.0]),
        ],
    )

    hits = store.search("tafsir-a", SearchRequest(mode=Mode.DENSE, limit=3, dense=[1.0, 0.0, 0.0, 0.0]))

    assert ayat_of(hits) == [(1, 2), (1, 3), (1, 1)]
    assert hits[0].score == pytest.approx(0.995, abs=1e-3)  # cosine
    assert hits[0].payload["text"] == "tafsir 1:2"  # the full payload comes back


def test_score_threshold_drops_weaker_hits(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert("tafsir-a", [point(1, 1, dense=[1.0, 0.0, 0.0, 0.0]), point(1, 2, dense=[0.0, 1.0, 0.0, 0.0])])

    request = SearchRequest(mode=Mode.DENSE, limit=5, dense=[1.0, 0.0, 0.0, 0.0], score_threshold=0.5)

    assert ayat_of(store.search("tafsir-a", request)) == [(1, 1)]


def test_sparse_search_matches_shared_terms(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert(
        "tafsir-a",
        [
            point(1, 1, terms={10: 1.0, 11: 1.0}),
            point(1, 2, terms={10: 2.0}),
            point(1, 3, terms={12: 1.0}),
            point(1, 4, terms={11: 1.0, 13: 1.0}),
        ],
    )

    hits = store.search("tafsir-a", SearchRequest(mode=Mode.SPARSE, limit=10, sparse=SparseVector([10], [1.0])))

    assert ayat_of(hits) == [(1, 2), (1, 1)]  # only points sharing term 10; the heavier weight first
    assert all(hit.score > 0 for hit in hits)


def test_hybrid_returns_the_union_ranked_by_rrf(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    # Dense similarity falls with n; the sparse weight of the shared term 10 rises with n.
    store.upsert(
        "tafsir-a",
        [point(1, n, dense=[1.0, 0.15 * n, 0.0, 0.0], terms={10: 0.1 * n, 20: 1.0}) for n in range(1, 9)],
    )
    query_dense, query_sparse = [1.0, 0.0, 0.0, 0.0], SparseVector([10], [1.0])
    dense_top = store.search("tafsir-a", SearchRequest(mode=Mode.DENSE, limit=3, dense=query_dense))
    sparse_top = store.search("tafsir-a", SearchRequest(mode=Mode.SPARSE, limit=3, sparse=query_sparse))
    assert ayat_of(dense_top) == [(1, 1), (1, 2), (1, 3)]
    assert ayat_of(sparse_top) == [(1, 8), (1, 7), (1, 6)]

    hybrid = store.search(
        "tafsir-a",
        SearchRequest(
            mode=Mode.HYBRID,
            limit=10,
            dense=query_dense,
            sparse=query_sparse,
            prefetch_limit=3,
            rrf_k=5,
            dense_weight=1.0,
            sparse_weights={SPARSE: 2.0},
        ),
    )

    expected = rrf([[h.id for h in dense_top], [h.id for h in sparse_top]], [1.0, 2.0], k=5)
    assert {hit.id for hit in hybrid} == set(expected)  # the union of both prefetches
    assert [hit.id for hit in hybrid] == sorted(expected, key=lambda i: (-expected[i], i))
    assert [hit.score for hit in hybrid] == pytest.approx([expected[hit.id] for hit in hybrid], rel=1e-5)
    assert ayat_of(hybrid)[0] == (1, 8)  # the sparse top wins: with equal weights it would tie with 1:1


def test_hybrid_order_is_identical_over_20_calls_with_many_tied_scores(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    # 20 points tie on the dense side only and 20 on the sparse side only: rank r on one side ties
    # with rank r on the other, and within each side all scores are equal.
    dense_side = [point(1, n, dense=[1.0, 0.0, 0.0, 0.0], terms={7: 1.0}) for n in range(1, 21)]
    sparse_side = [point(2, n, dense=[0.0, 1.0, 0.0, 0.0], terms={5: 1.0}) for n in range(1, 21)]
    store.upsert("tafsir-a", dense_side + sparse_side)
    request = SearchRequest(
        mode=Mode.HYBRID,
        limit=10,
        dense=[1.0, 0.0, 0.0, 0.0],
        sparse=SparseVector([5], [1.0]),
        prefetch_limit=20,
    )

    runs = [store.search("tafsir-a", request) for _ in range(20)]

    assert all([hit.id for hit in run] == [hit.id for hit in runs[0]] for run in runs)
    first = runs[0]
    assert len(first) == 10
    assert [(-hit.score, hit.id) for hit in first] == sorted((-hit.score, hit.id) for hit in first)
    assert len({hit.score for hit in first}) < len(first)  # the ties are really there


@pytest.mark.parametrize(
    ("point_filter", "expected"),
    [
        (PointFilter(surahs=[2]), [(2, 1), (2, 2), (2, 3)]),
        (PointFilter(surahs=[1, 3]), [(1, 1), (1, 2), (1, 3), (3, 1), (3, 2), (3, 3)]),
        (PointFilter(ayah_min=2, ayah_max=3), [(1, 2), (1, 3), (2, 2), (2, 3), (3, 2), (3, 3)]),
        (PointFilter(surahs=[2], ayah_min=3), [(2, 3)]),
        (PointFilter(editions=["id.indonesian"]), [(1, 1)]),
        (PointFilter(ayat=[(1, 2), (3, 1)]), [(1, 2), (3, 1)]),
        (PointFilter(ayat=[(1, 1)], editions=[EDITION]), [(1, 1)]),
        (PointFilter(surahs=[]), []),
        (PointFilter(ayat=[]), []),
    ],
    ids=[
        "surah",
        "surahs",
        "ayah-range",
        "surah+ayah-min",
        "edition",
        "ayat-pairs",
        "pair+edition",
        "no-surah",
        "no-pair",
    ],
)
def test_filters_restrict_search_count_and_retrieve(
    store: VectorStore, point_filter: PointFilter, expected: list[tuple[int, int]]
) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert("tafsir-a", [point(s, a) for s in (1, 2, 3) for a in (1, 2, 3)])
    store.upsert("tafsir-a", [point(1, 1, edition="id.indonesian")])
    if point_filter.editions is None:
        expected_count = len(expected) + (1 if (1, 1) in expected else 0)  # both editions of 1:1
    else:
        expected_count = len(expected)

    request = SearchRequest(mode=Mode.DENSE, limit=20, dense=[1.0, 0.0, 0.0, 0.0], filter=point_filter)

    assert sorted(set(ayat_of(store.search("tafsir-a", request)))) == expected
    assert store.count("tafsir-a", point_filter) == expected_count
    assert sorted(set(ayat_of(store.retrieve("tafsir-a", point_filter)))) == expected


# --- aliases -------------------------------------------------------------------------------------------


def test_reads_go_through_an_alias(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert("tafsir-a", [point(1, 1), point(1, 2, dense=[0.0, 1.0, 0.0, 0.0], edition="id.indonesian")])

    store.swap_alias("tafsir", "tafsir-a")

    assert store.resolve_alias("tafsir") == "tafsir-a"
    assert store.resolve_alias("tafsir-a") is None  # a collection is not an alias
    assert store.count("tafsir") == 2
    assert ayat_of(store.search("tafsir", SearchRequest(mode=Mode.DENSE, limit=1, dense=[1.0, 0, 0, 0]))) == [(1, 1)]
    assert len(store.retrieve("tafsir", PointFilter(surahs=[1]))) == 2
    assert len(list(store.iter_hashes("tafsir"))) == 2
    assert store.editions("tafsir") == {EDITION: 1, "id.indonesian": 1}
    info = store.collection_info("tafsir")
    assert info is not None
    assert (info.name, info.spec, info.points) == ("tafsir-a", SPEC, 2)
    assert store.list_collections() == ["tafsir-a"]  # physical collections only


def test_swap_alias_moves_readers_to_the_new_collection_and_the_old_can_be_dropped(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.upsert("tafsir-a", [point(1, 1)])
    store.swap_alias("tafsir", "tafsir-a")
    new_spec = CollectionSpec(dense_size=4, model="other-model@def", fingerprint="f2")
    store.create_collection("tafsir-b", new_spec)
    store.upsert("tafsir-b", [point(2, 1), point(2, 2)])

    store.swap_alias("tafsir", "tafsir-b")
    store.drop_collection("tafsir-a")

    assert store.resolve_alias("tafsir") == "tafsir-b"
    assert store.count("tafsir") == 2
    assert store.collection_info("tafsir").spec == new_spec  # type: ignore[union-attr]
    assert store.list_collections() == ["tafsir-b"]
    with pytest.raises(StoreError, match="tafsir-a"):
        store.count("tafsir-a")


def test_swap_alias_to_a_missing_collection_fails_and_leaves_the_alias(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    store.swap_alias("tafsir", "tafsir-a")

    with pytest.raises(StoreError, match="absent"):
        store.swap_alias("tafsir", "absent")

    assert store.resolve_alias("tafsir") == "tafsir-a"


def test_resolve_alias_of_an_unknown_name_is_none(store: VectorStore) -> None:
    assert store.resolve_alias("tafsir") is None


# --- Edge only -----------------------------------------------------------------------------------------


def test_second_process_opening_the_edge_store_gets_store_locked_error_naming_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from services.store import StoreLockedError\n"
        "from services.store.edge import EdgeStore\n"
        "try:\n"
        "    EdgeStore(Path(sys.argv[1]))\n"
        "except StoreLockedError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    with EdgeStore(path):
        result = subprocess.run(
            [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    assert result.returncode == 3, result.stderr
    assert f"process {os.getpid()}" in result.stdout
    assert "TAFSIR_QDRANT_PATH" in result.stdout
    assert "TAFSIR_QDRANT_URL" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_second_edge_store_in_the_same_process_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path / "qdrant")
    with pytest.raises(StoreLockedError, match=str(os.getpid())):
        EdgeStore(tmp_path / "qdrant")
    first.close()

    EdgeStore(tmp_path / "qdrant").close()


def test_reopened_edge_store_sees_the_data(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "qdrant") as first:
        first.create_collection("tafsir-a", SPEC)
        first.upsert("tafsir-a", [point(1, 1), point(1, 2)])
        first.swap_alias("tafsir", "tafsir-a")

    with EdgeStore(tmp_path / "qdrant") as reopened:
        assert reopened.resolve_alias("tafsir") == "tafsir-a"
        assert reopened.count("tafsir") == 2
        assert reopened.collection_info("tafsir").spec == SPEC  # type: ignore[union-attr]


def test_truncated_alias_file_gives_a_store_error_naming_the_file(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "qdrant") as first:
        first.create_collection("tafsir-a", SPEC)
        first.swap_alias("tafsir", "tafsir-a")
    alias_file = tmp_path / "qdrant" / "aliases.json"
    alias_file.write_bytes(alias_file.read_bytes()[:7])

    with EdgeStore(tmp_path / "qdrant") as reopened:
        with pytest.raises(StoreError, match=r"aliases\.json.*tafsir ingest --full") as raised:
            reopened.count("tafsir")
        assert str(alias_file) in str(raised.value)
        # The rebuild it suggests works: moving the alias writes a sound file again.
        reopened.swap_alias("tafsir", "tafsir-a")
        assert reopened.count("tafsir") == 0


def test_missing_shard_folder_gives_a_store_error_suggesting_a_full_ingest(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "qdrant") as first:
        first.create_collection("tafsir-a", SPEC)
    shard = tmp_path / "qdrant" / "collections" / "tafsir-a" / "shard"
    for child in sorted(shard.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    shard.rmdir()

    with EdgeStore(tmp_path / "qdrant") as reopened, pytest.raises(StoreError, match="tafsir ingest --full") as raised:
        reopened.count("tafsir-a")
    assert str(shard) in str(raised.value)


def test_dropping_a_collection_while_another_thread_queries_it_does_not_crash_the_query(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "qdrant")
    store.create_collection("tafsir-a", SPEC)
    store.upsert("tafsir-a", [point(1, n, dense=[1.0, 0.01 * n, 0, 0], terms={5: 1.0}) for n in range(1, 300)])
    store.swap_alias("tafsir", "tafsir-a")
    store.create_collection("tafsir-b", SPEC)
    store.upsert("tafsir-b", [point(2, n, terms={5: 1.0}) for n in range(1, 300)])
    request = SearchRequest(
        mode=Mode.HYBRID, limit=5, dense=[1.0, 0.0, 0.0, 0.0], sparse=SparseVector([5], [1.0]), prefetch_limit=100
    )
    errors: list[BaseException] = []
    served: list[int] = []  # the surah each answer came from
    stop = threading.Event()

    def ask_repeatedly() -> None:
        while not stop.is_set():
            try:
                served.append(store.search("tafsir", request)[0].payload["surah"])
            except BaseException as exc:
                errors.append(exc)
                return

    readers = [threading.Thread(target=ask_repeatedly) for _ in range(3)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 30
    while len(served) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)

    store.swap_alias("tafsir", "tafsir-b")  # what a re-ingest does: move the alias, then drop the old one
    store.drop_collection("tafsir-a")
    answered_before_drop = len(served)
    while len(served) < answered_before_drop + 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    for reader in readers:
        reader.join(timeout=30)
    store.close()

    assert errors == []
    assert set(served) == {1, 2}
    assert served[-1] == 2
    assert not (tmp_path / "qdrant" / "collections" / "tafsir-a").exists()


# --- server only -----------------------------------------------------------------------------------


def test_retry_helper_retries_transient_failures_then_succeeds() -> None:
    attempts: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) <= 2:
            raise ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused"))
        return "answer"

    assert call_with_retries(flaky, location="http://qdrant:6333", sleep=sleeps.append) == "answer"
    assert len(attempts) == 3
    assert sleeps == [0.5, 1.0]


def test_retry_helper_does_not_retry_a_client_error() -> None:
    attempts: list[int] = []

    def rejected() -> None:
        attempts.append(1)
        raise UnexpectedResponse(400, "Bad Request", b'{"status":{"error":"bad"}}', httpx.Headers())

    with pytest.raises(UnexpectedResponse):
        call_with_retries(rejected, location="http://qdrant:6333", sleep=lambda _: None)
    assert len(attempts) == 1


def test_unreachable_server_fails_naming_the_url_and_the_setting() -> None:
    url = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
    sleeps: list[float] = []
    store = ServerStore(QdrantClient(url=url, timeout=2, check_compatibility=False), url, sleep=sleeps.append)

    with pytest.raises(StoreError) as raised:
        store.list_collections()

    message = str(raised.value)
    assert url in message
    assert "TAFSIR_QDRANT_URL" in message
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # five tries, doubling waits


# --- the factory -----------------------------------------------------------------------------------


def test_open_store_picks_edge_without_a_url_and_the_server_with_one(tmp_path: Path) -> None:
    embedded = open_store(Settings(_env_file=None, qdrant_path=tmp_path / "qdrant"))  # type: ignore[call-arg]
    server = open_store(Settings(_env_file=None, qdrant_url="http://127.0.0.1:9"))  # type: ignore[call-arg]

    assert isinstance(embedded, EdgeStore)
    assert isinstance(server, ServerStore)
    assert server.location == "http://127.0.0.1:9"
    embedded.close()
    server.close()


def test_the_embedded_store_never_imports_qdrant_client(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from services.settings import Settings\n"
        "from services.store import open_store\n"
        "assert 'qdrant_edge' not in sys.modules and 'qdrant_client' not in sys.modules\n"
        "open_store(Settings(_env_file=None, qdrant_path=sys.argv[1])).close()\n"
        "print('qdrant_client' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "qdrant")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_update_sparse_rewrites_sparse_vectors_and_payload_but_keeps_the_dense(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    first = point(1, 1, dense=[1.0, 0.0, 0.0, 0.0], terms={7: 1.0})
    store.upsert("tafsir-a", [first])
    store.update_sparse(
        "tafsir-a", [SparseUpdate(first.id, {SPARSE: SparseVector([5], [1.0])}, {"sparse_hash": "new"})]
    )
    by_new_term = store.search("tafsir-a", SearchRequest(mode=Mode.SPARSE, limit=5, sparse=SparseVector([5], [1.0])))
    assert [h.id for h in by_new_term] == [first.id]
    assert store.search("tafsir-a", SearchRequest(mode=Mode.SPARSE, limit=5, sparse=SparseVector([7], [1.0]))) == []
    dense = store.search("tafsir-a", SearchRequest(mode=Mode.DENSE, limit=5, dense=[1.0, 0.0, 0.0, 0.0]))
    assert dense[0].id == first.id and dense[0].score == pytest.approx(1.0)
    assert [h.sparse_hash for h in store.iter_hashes("tafsir-a")] == ["new"]


def test_sparse_mode_fuses_several_sparse_vectors(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    a = point(1, 1, terms={5: 1.0})
    b = point(1, 2, terms={6: 1.0})
    store.upsert("tafsir-a", [a, b])
    store.update_sparse("tafsir-a", [SparseUpdate(b.id, {SPARSE_CONTEXT: SparseVector([5], [1.0])}, {})])
    request = SearchRequest(
        mode=Mode.SPARSE, limit=5, sparse=SparseVector([5], [1.0]), sparse_weights={SPARSE: 1.0, SPARSE_CONTEXT: 1.0}
    )
    assert {h.id for h in store.search("tafsir-a", request)} == {a.id, b.id}


# --- the translation's own dense vector (dense_tr) -------------------------------------------------------


def test_hybrid_fuses_the_translation_vector_as_one_more_list(store: VectorStore) -> None:
    """dense_tr is searched with the query's dense vector and fused with its weight; points without one
    (no translation) are simply absent from its list."""
    store.create_collection("tafsir-a", SPEC)
    near, far = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    a = point(1, 1, dense=near, terms={5: 1.0})  # the chunk vector is close to the query, its translation is not
    b = PointToStore(**{**point(1, 2, dense=far, terms={5: 1.0}).__dict__, "dense_tr": near})
    c = point(1, 3, dense=far, terms={5: 1.0})  # no translation vector at all
    store.upsert("tafsir-a", [a, b, c])
    store.update_sparse("tafsir-a", [SparseUpdate(a.id, {}, {}, far)])

    only_tr = SearchRequest(mode=Mode.DENSE, limit=5, dense=near, dense_using="dense_tr")
    assert [h.id for h in store.search("tafsir-a", only_tr)] == [b.id, a.id]
    assert store.search("tafsir-a", only_tr)[0].score == pytest.approx(1.0)

    def hybrid(dense_tr_weight: float) -> list[str]:
        request = SearchRequest(
            mode=Mode.HYBRID,
            limit=3,
            dense=near,
            sparse=SparseVector([5], [1.0]),
            rrf_k=1,
            dense_weight=1.0,
            dense_tr_weight=dense_tr_weight,
            sparse_weights={SPARSE: 0.1},
        )
        return [h.id for h in store.search("tafsir-a", request)]

    assert hybrid(0.0)[0] == a.id
    assert hybrid(4.0)[0] == b.id  # the translation list outweighs the chunk list
    chunk_list = [a.id, *sorted([b.id, c.id])]  # b and c tie (cosine 0): by id
    sparse_list = sorted([a.id, b.id, c.id])  # all tie
    expected = rrf([chunk_list, [b.id, a.id], sparse_list], [1.0, 4.0, 0.1], k=1)
    assert hybrid(4.0) == sorted(expected, key=lambda i: (-expected[i], i))


def test_scroll_points_carries_the_translation_vector(store: VectorStore) -> None:
    store.create_collection("tafsir-a", SPEC)
    with_tr = PointToStore(**{**point(1, 1).__dict__, "dense_tr": [0.0, 0.0, 1.0, 0.0]})
    without = point(1, 2)
    store.upsert("tafsir-a", [with_tr, without])
    points, _ = store.scroll_points("tafsir-a")
    by_id = {p.id: p for p in points}
    assert by_id[with_tr.id].dense_tr == pytest.approx([0.0, 0.0, 1.0, 0.0])
    assert by_id[without.id].dense_tr is None


def test_a_collection_made_before_the_translation_vector_answers_and_gets_it_added(
    store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.store import base

    with monkeypatch.context() as before:  # a collection of an earlier release: the chunk vector alone
        before.setattr(base, "DENSE_VECTORS", (base.DENSE,))
        store.create_collection("tafsir-a", SPEC)
    a = point(1, 1, terms={5: 1.0})
    store.upsert("tafsir-a", [a])
    hybrid = SearchRequest(
        mode=Mode.HYBRID, limit=3, dense=[1.0, 0.0, 0.0, 0.0], sparse=SparseVector([5], [1.0]), dense_tr_weight=1.0
    )
    assert [h.id for h in store.search("tafsir-a", hybrid)] == [a.id]  # the lists it has answer
    only_tr = SearchRequest(mode=Mode.DENSE, limit=3, dense=[1.0, 0.0, 0.0, 0.0], dense_using="dense_tr")
    with pytest.raises(StoreError, match=r"dense_tr.*tafsir ingest"):
        store.search("tafsir-a", only_tr)

    assert store.add_vectors("tafsir-a") == ["dense_tr"]
    assert store.add_vectors("tafsir-a") == []
    assert store.search("tafsir-a", only_tr) == []  # there, and empty until points get it
    store.update_sparse("tafsir-a", [SparseUpdate(a.id, {}, {"dense_tr_hash": "t"}, [0.0, 1.0, 0.0, 0.0])])
    found = store.search("tafsir-a", only_tr)
    assert [h.id for h in found] == [a.id] and found[0].score == pytest.approx(0.0, abs=1e-6)
    assert [h.dense_tr_hash for h in store.iter_hashes("tafsir-a")] == ["t"]
    points, _ = store.scroll_points("tafsir-a")
    assert points[0].dense == pytest.approx([1.0, 0.0, 0.0, 0.0])  # the chunk vector stays


def test_the_vectors_a_store_reports_are_its_named_ones_in_a_fixed_order(store: VectorStore) -> None:
    from services.store.base import DENSE_VECTORS, SPARSE_VECTORS, recorded_vectors

    store.create_collection("tafsir-a", SPEC)
    assert recorded_vectors(store.index_settings("tafsir-a")) == [*DENSE_VECTORS, *SPARSE_VECTORS]


def test_a_server_collection_with_one_unnamed_vector_reports_no_vector_names() -> None:
    """A collection made elsewhere (one unnamed dense vector): its parameters are not vector names."""
    from qdrant_client import models

    from services.store.base import recorded_vectors

    store = ServerStore(QdrantClient(location=":memory:"), ":memory:")
    try:
        store.client.create_collection(
            "elsewhere", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
        )
        assert recorded_vectors(store.index_settings("elsewhere")) == []
    finally:
        store.close()
