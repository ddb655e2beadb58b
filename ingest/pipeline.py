"""The ingest worker's data flow:

    source ayat → chunks → diff against stored hashes → embed new/changed → upsert → delete stale
    → (new collection only) verify → move the alias → drop the old collection

Incremental by default, with four hashes on each point: a chunk whose ``dense_hash`` (its text, the
model, the chunking) is already stored is not embedded again; if only what else the point carries
changed (``content_hash``: translations, transliteration, Arabic) or what its sparse vectors are made
from (``sparse_hash``: BM25 settings and layout, neighbouring ayat), its payload and sparse vectors are
rewritten and its dense vector stays; the translation's own vector (``dense_tr``) is embedded again only
when ``dense_tr_hash`` (the translation it is made from) changed. A different model, vector size or chunking
builds a new physical collection behind the alias; readers stay on the old one until the new one
is complete and verified, and a run killed half-way is resumed by the next run.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.archive import SourceArchive
from ingest.builtin import BUILTIN_EDITION, BUILTIN_ORIGIN
from ingest.chunking import Chunk, ChunkingParams, chunk_ayat, content_hash, join_chunks
from ingest.sources import Ayah, Source
from services.embedding import Embedder, ModelMismatchError
from services.quran import shown_translation
from services.quran import surah as surah_info
from services.settings import Settings
from services.sparse import (
    ARABIC,
    SURAH_NAME,
    TAFSIR,
    TRANSLATION_2019,
    TRANSLATION_EN,
    TRANSLATION_LEGACY,
    TRANSLITERATION,
    AyahTexts,
    Bm25Settings,
    SparseEncoder,
)
from services.store.base import (
    DENSE_TRANSLATION,
    FIRST_SPARSE_VECTORS,
    CollectionSpec,
    Hit,
    PointFilter,
    PointToStore,
    SparseUpdate,
    SparseVector,
    StoredHash,
    StoreError,
    VectorStore,
    recorded_vectors,
)

log = logging.getLogger(__name__)

# Points written between two index builds of the store (``VectorStore.optimize``), besides the one at the end.
INDEX_EVERY = 200_000

ProgressCallback = Callable[[int, int], None]  # (chunks done, chunks to embed)


@dataclass
class IngestSummary:
    edition: str
    alias: str
    collection: str
    model: str
    dense_size: int
    chunks: int = 0
    embedded: int = 0
    # chunks whose payload and sparse vectors were rewritten and dense vector kept: a translation, a neighbouring
    # ayah or the BM25 layout changed, not the chunk's text
    resparsed: int = 0
    # of those, chunks whose translation vector (dense_tr) was embedded: the translation changed, or the point was
    # stored before the vector existed
    translated: int = 0
    unchanged: int = 0
    deleted: int = 0
    carried_over: int = 0  # chunks of other editions moved into a rebuilt collection
    rebuilt: bool = False  # a new physical collection was built and the alias moved to it
    resumed: bool = False  # continued a build that an earlier run left unfinished
    dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False  # a plan: the counts say what a run would do; nothing was written
    # the edition's points readers see before the run, and how many of them it rewrites with other content
    stored: int = 0
    replaced: int = 0
    refused: str | None = None  # a dry run's plan that a run without --replace would refuse: why

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EditionLoss:
    """What a run takes from one edition as readers see it now: of its ``stored`` points, those it rewrites with
    other content (``replaced``) and those it deletes."""

    edition: str
    stored: int
    replaced: int
    deleted: int
    origin: str  # where the run reads the edition from (a file, or the built-in source)

    @property
    def builtin(self) -> bool:
        return self.edition == BUILTIN_EDITION

    def needs_replace(self) -> bool:
        """Whether the run may go on only when explicitly allowed (``--replace``; issue 23: nothing stored is
        deleted because of a user's input without an explicit flag): a user file that would replace or delete
        points of the built-in edition, or any source that would delete more than half of an edition."""
        if self.builtin and self.origin != BUILTIN_ORIGIN and (self.replaced or self.deleted):
            return True
        return self.deleted * 2 > self.stored


class ReplaceRefused(ValueError):
    """A run refused before its first write (:meth:`EditionLoss.needs_replace`); nothing stored has changed."""

    def __init__(self, loss: EditionLoss, alias: str, location: str) -> None:
        self.loss, self.alias, self.location = loss, alias, location
        super().__init__(self.message())

    def message(self, allow: str = "--replace") -> str:
        """What would be lost and how to go on; ``allow`` is how the face lets a run replace (a flag, a setting)."""
        loss = self.loss
        changes = [f"replace {loss.replaced:,}"] if loss.replaced and loss.builtin else []
        changes += [f"delete {loss.deleted:,}"] if loss.deleted else []
        what = f"the built-in edition {loss.edition!r}" if loss.builtin else f"edition {loss.edition!r}"
        text = (
            f"refused: ingesting {loss.origin} would {' and '.join(changes)} of the {loss.stored:,} points of "
            f"{what} behind alias {self.alias!r} in {self.location}; nothing was written. "
        )
        if loss.builtin and loss.origin != BUILTIN_ORIGIN:
            return text + (
                "To keep the built-in edition, give your file an edition id of its own (--edition my.tafsir, or "
                f"an 'edition' field on each row); to replace the built-in edition with it, run again with {allow}."
            )
        return text + (
            f"That is more than half of the edition: if the source is meant to be smaller, run again with {allow} "
            f"(`tafsir ingest --dry-run` lists what a run deletes)."
        )


@dataclass(frozen=True)
class Target:
    name: str
    new: bool  # not behind the alias yet: move the alias when complete
    resumed: bool
    previous: str | None  # the collection the alias points at now
    exists: bool = True  # False only for a dry run's new build, which is named but not created


def collection_spec(embedder: Embedder, params: ChunkingParams) -> CollectionSpec:
    # The sparse vectors' *names* shape a collection; their BM25 settings only their values, which each
    # point's sparse_hash tracks, so a BM25 change rewrites sparse vectors in place, embedding nothing. A vector
    # added since the first collections (bm25_ar, dense_tr) is added to a live one in place
    # (``VectorStore.add_vectors``) and is not part of the fingerprint, which would otherwise send every chunk to the
    # model again.
    layout = f"{params.limit}/{params.overlap}" + ("/translation-heading" if params.translation_heading else "")
    names = ",".join(FIRST_SPARSE_VECTORS)
    fingerprint = content_hash(embedder.identity, str(embedder.dimension), layout, names)
    return CollectionSpec(dense_size=embedder.dimension, model=embedder.identity, fingerprint=fingerprint)


def _build_pattern(alias: str, fingerprint: str | None = None) -> re.Pattern[str]:
    fp = re.escape(fingerprint[:10]) if fingerprint else "[0-9a-f]{10}"
    return re.compile(rf"^{re.escape(alias)}-{fp}-\d{{14}}$")


def plan_target(store: VectorStore, alias: str, spec: CollectionSpec, full: bool, create: bool = True) -> Target:
    """Where this run writes: the live collection if compatible, else a resumed or new build.

    A new build's collection is created here unless ``create`` is false (a dry run names it only).
    """
    current = store.resolve_alias(alias)
    if current is not None and not full:
        info = store.collection_info(current)
        if info is not None and info.spec == spec:
            return Target(current, new=False, resumed=False, previous=current)
    if not full:
        pattern = _build_pattern(alias, spec.fingerprint)
        for name in sorted(store.list_collections(), reverse=True):
            if name != current and pattern.match(name):
                info = store.collection_info(name)
                if info is not None and info.spec == spec:
                    return Target(name, new=True, resumed=True, previous=current)
    name = f"{alias}-{spec.fingerprint[:10]}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    while name in store.list_collections():  # two builds within one second
        time.sleep(1)
        name = f"{alias}-{spec.fingerprint[:10]}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    if create:
        store.create_collection(name, spec)
    return Target(name, new=True, resumed=False, previous=current, exists=create)


def stored_ayat(store: VectorStore, collection: str, edition: str) -> list[Ayah]:
    """An edition's ayat rebuilt from its stored chunks (their character spans), to carry it over."""
    return [
        _stored_ayah(edition, surah, ayah, [hit.payload for hit in hits])
        for (surah, ayah), hits in sorted(_stored_points(store, collection, edition).items())
    ]


def _stored_points(store: VectorStore, collection: str, edition: str) -> dict[tuple[int, int], list[Hit]]:
    """An edition's stored points by (surah, ayah)."""
    by_ayah: dict[tuple[int, int], list[Hit]] = defaultdict(list)
    only_edition = PointFilter(editions=[edition])
    for hit in store.retrieve(collection, only_edition, limit=store.count(collection, only_edition)):
        by_ayah[(hit.payload["surah"], hit.payload["ayah"])].append(hit)
    return by_ayah


def _stored_ayah(edition: str, surah: int, ayah: int, payloads: list[dict]) -> Ayah:
    text = join_chunks([(p["char_start"], p["char_end"], p["text"]) for p in payloads])
    first = payloads[0]
    # Points stored before both wordings were kept hold the source's translation in `translation`.
    legacy = first.get(TRANSLATION_LEGACY) if TRANSLATION_LEGACY in first else first.get("translation")
    return Ayah(
        edition,
        surah,
        ayah,
        text,
        legacy,
        first.get("arabic"),
        first.get(TRANSLATION_2019),
        first.get(TRANSLITERATION),
        first.get(TRANSLATION_EN),
    )


def ayah_texts(ayah: Ayah, tafsir: str | None = None) -> AyahTexts:
    """What a sparse vector can index of ``ayah`` (services/sparse.py, ``TEXT_FIELDS``); ``tafsir`` is one
    chunk's text, the whole ayah's by default."""
    return {
        TAFSIR: ayah.text if tafsir is None else tafsir,
        TRANSLATION_LEGACY: ayah.translation,
        TRANSLATION_2019: ayah.translation_2019,
        TRANSLITERATION: ayah.transliteration,
        SURAH_NAME: surah_info(ayah.surah).name,
        TRANSLATION_EN: ayah.translation_en,
        ARABIC: ayah.arabic,
    }


def _batches(items: Sequence[Chunk], size: int) -> Iterator[Sequence[Chunk]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EditionWork:
    """One edition's chunks, what must be embedded or re-weighted, and its sparse-vector context."""

    def __init__(self, edition: str, ayat: Sequence[Ayah], chunks: list[Chunk], sparse: SparseEncoder) -> None:
        self.edition = edition
        self.ayat = ayat
        self.chunks = chunks
        self.sparse = sparse
        self.index = ayat_index(ayat)
        self.embed: list[Chunk] = []
        self.resparse: list[Chunk] = []
        self.translate: set[str] = set()  # ids of resparse chunks whose translation vector is embedded (again)
        self.stale: set[str] = set()
        self._weights: dict[tuple[int, int], dict[int, float]] = {}

    def ayah(self, chunk: Chunk) -> Ayah:
        return self.index[chunk.surah, chunk.ayah]

    def neighbours(self, chunk: Chunk) -> list[Ayah]:
        return [
            a for key in ((chunk.surah, chunk.ayah - 1), (chunk.surah, chunk.ayah + 1)) if (a := self.index.get(key))
        ]

    def translation(self, chunk: Chunk) -> str | None:
        """What the chunk's translation vector (``dense_tr``) is made from; None: the ayah has no translation."""
        return translation_text(self.ayah(chunk))

    def sparse_hash(self, chunk: Chunk) -> str:
        """What a chunk's sparse vectors depend on beyond its own ayah: BM25 settings and neighbours."""
        parts = ["\x1e".join([str(a.ayah), *(t or "" for t in ayah_texts(a).values())]) for a in self.neighbours(chunk)]
        return content_hash(self.sparse.settings.version, *parts)

    def sparse_vectors(self, chunk: Chunk) -> dict[str, SparseVector]:
        texts = ayah_texts(self.ayah(chunk), chunk.text)
        return self.sparse.vectors(texts, [self._ayah_weights(a) for a in self.neighbours(chunk)])

    def _ayah_weights(self, ayah: Ayah) -> dict[int, float]:
        key = (ayah.surah, ayah.ayah)
        if key not in self._weights:
            self._weights[key] = self.sparse.neighbour_weights(ayah_texts(ayah))
        return self._weights[key]


@dataclass
class IngestPlan:
    """Where a run writes and, per edition, what it embeds, re-weights and deletes; ``summary`` holds
    the counts as the run will report them."""

    target: Target
    spec: CollectionSpec
    work: list[EditionWork]
    summary: IngestSummary
    refusal: ReplaceRefused | None = None  # a dry run's plan that a run without ``replace`` would refuse


class IngestPipeline:
    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        embedder: Embedder,
        sparse: SparseEncoder | None = None,
        archive: SourceArchive | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.sparse = sparse or SparseEncoder(Bm25Settings.named(settings.sparse_layout, settings.sparse_stemmer))
        self.archive = archive or SourceArchive.for_store(store, settings.collection)
        self._unindexed = 0

    @property
    def params(self) -> ChunkingParams:
        return ChunkingParams(
            self.embedder.max_tokens,
            self.settings.chunk_overlap,
            self.embedder.reserved_tokens,
            translation_heading=True,
        )

    def chunk(self, ayat: Sequence[Ayah]) -> list[Chunk]:
        return chunk_ayat(ayat, self.embedder.tokenizer, self.params)

    def needs_new_collection(self, full: bool = False) -> bool:
        """Whether a run would build a new collection (none yet, a rebuild, another model or chunking) rather
        than write into the live one: such a run needs the alias to itself (ingest/lock.py)."""
        spec = collection_spec(self.embedder, self.params)
        return plan_target(self.store, self.settings.collection, spec, full, create=False).new

    def plan(self, source: Source, full: bool = False, *, dry_run: bool = False, replace: bool = False) -> IngestPlan:
        """Chunk the source and diff it against the store: what a run embeds, re-weights and deletes.

        With ``dry_run`` nothing is written (a new build is named, not created); :meth:`run` executes a
        plan made without it. A run that would take what :meth:`EditionLoss.needs_replace` protects raises
        :class:`ReplaceRefused` before its first write unless ``replace``; a dry run notes it in ``refused``.
        """
        started = time.perf_counter()
        alias = self.settings.collection
        spec = collection_spec(self.embedder, self.params)
        if not full:
            self._refuse_another_model(alias, spec)
        # Created only once the run is known not to be refused: a refused run writes nothing at all.
        target = plan_target(self.store, alias, spec, full, create=False)
        summary = IngestSummary(
            source.edition,
            alias,
            target.name,
            spec.model,
            spec.dense_size,
            rebuilt=target.new,
            resumed=target.resumed,
            dry_run=dry_run,
        )
        editions = [(source.edition, list(source.ayat))]
        if target.new:
            # A rebuild must not lose the other editions the old collection serves: re-chunk and
            # re-embed them from their stored text with the new model.
            editions += self._carried_editions(target.previous, full, besides=source.edition)

        # A collection without the translation vector (made before it, or the vector removed since) gets it below:
        # every translation is then embedded, whatever hash its points hold.
        refill = target.exists and DENSE_TRANSLATION not in recorded_vectors(self.store.index_settings(target.name))
        work = []
        for edition, ayat in editions:
            job = EditionWork(edition, ayat, self.chunk(ayat), self.sparse)
            stored = {h.id: h for h in self.store.iter_hashes(target.name, edition)} if target.exists else {}
            for chunk in job.chunks:
                held = stored.get(chunk.id)
                ayah = job.ayah(chunk)
                if held is None or not self._dense_is_current(held, chunk, ayah, spec):
                    job.embed.append(chunk)
                    continue
                # The text is the same: keep the dense vector, rewrite the rest if anything else changed.
                content_changed = held.content_hash != self._content_hash(chunk, ayah, spec)
                wanted = self._dense_tr_hash(ayah, spec)
                translation_changed = held.dense_tr_hash != wanted or (refill and wanted is not None)
                if content_changed or translation_changed or held.sparse_hash != job.sparse_hash(chunk):
                    job.resparse.append(chunk)
                    if translation_changed:
                        job.translate.add(chunk.id)
            job.stale = set(stored) - {c.id for c in job.chunks}
            work.append(job)
            if edition == source.edition:
                loss = self._loss(source, target, job, stored, full)
                summary.chunks = len(job.chunks)
                summary.unchanged = len(job.chunks) - len(job.embed)
                summary.embedded = len(job.embed)
                summary.resparsed = len(job.resparse)
                summary.translated = len(job.translate)
                summary.deleted = loss.deleted
                summary.stored, summary.replaced = loss.stored, loss.replaced
            else:
                summary.carried_over += len(job.embed)
        refusal = None
        if not replace and loss.needs_replace():
            refusal = ReplaceRefused(loss, alias, self.store.location)
            if not dry_run:
                raise refusal
            summary.refused = str(refusal)
        if not target.exists and not dry_run:
            self.store.create_collection(target.name, spec)
            target = dataclasses.replace(target, exists=True)
        elif not dry_run:
            # A collection made before a vector existed gets it now; the resparse above fills it.
            added = self.store.add_vectors(target.name)
            if added:
                log.info("added vector(s) %s to %s", ", ".join(added), target.name)
        summary.seconds = round(time.perf_counter() - started, 3)
        return IngestPlan(target, spec, work, summary, refusal)

    def _loss(
        self, source: Source, target: Target, job: EditionWork, stored: dict[str, StoredHash], full: bool
    ) -> EditionLoss:
        """What the run takes from the source's edition as readers see it now (the live collection)."""
        if not target.new:  # the live collection itself: the diff says it
            replaced = sum(1 for c in job.embed if c.id in stored) + len(job.resparse)
            return EditionLoss(source.edition, len(stored), replaced, len(job.stale), source.origin)
        # A new build replaces the live collection whole: its points of this edition that the build does not
        # produce are gone once the alias moves, and those it produces hold the source's text.
        none = EditionLoss(source.edition, 0, 0, 0, source.origin)
        if target.previous is None:
            return none
        try:
            live = _stored_points(self.store, target.previous, source.edition)
        except StoreError as exc:
            if not full:
                raise
            # The repair of a damaged collection (see _carried_editions): what cannot be read cannot be kept.
            log.warning("cannot read %s to compare edition %r with it (%s)", target.previous, source.edition, exc)
            return none
        produced = {c.id for c in job.chunks}
        stored_count = replaced = deleted = 0
        for (surah, ayah), hits in live.items():
            stored_count += len(hits)
            kept = [hit for hit in hits if hit.id in produced]
            deleted += len(hits) - len(kept)
            new = job.index.get((surah, ayah))
            if kept and new != _stored_ayah(source.edition, surah, ayah, [hit.payload for hit in hits]):
                replaced += len(kept)
        return EditionLoss(source.edition, stored_count, replaced, deleted, source.origin)

    def run(
        self,
        source: Source,
        full: bool = False,
        progress: ProgressCallback | None = None,
        *,
        replace: bool = False,
    ) -> IngestSummary:
        """Plan and execute one run; :class:`ReplaceRefused` (nothing written) unless ``replace`` allows it."""
        started = time.perf_counter()
        plan = self.plan(source, full, replace=replace)
        self._execute(plan, progress)
        summary = plan.summary
        summary.dropped = self._drop_superseded(summary.alias, plan.target.name)
        self._archive(plan.work, source)
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary

    def _execute(self, plan: IngestPlan, progress: ProgressCallback | None) -> None:
        target, spec, work = plan.target, plan.spec, plan.work
        # A chunk embedded on its translation alone counts as one unit of work too.
        total = sum(len(job.embed) + len(job.translate) for job in work)
        self._unindexed = 0  # points written since the store last built its indexes
        done = 0
        if progress:
            progress(0, total)
        # Two stages overlap: while the model embeds batch i+1 (torch releases the GIL), a worker thread
        # computes batch i's BM25 vectors and payloads and upserts it. One batch in flight at most.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upsert") as writer:
            pending: Future[int] | None = None
            for job in work:
                # Longest first: similar lengths share a batch (little padding); the ETA is pessimistic.
                for batch in _batches(sorted(job.embed, key=lambda c: -c.tokens), self.settings.upsert_batch_size):
                    vectors = self.embedder.encode_documents(
                        [c.model_text for c in batch], self.settings.embed_batch_size
                    )
                    translations = self._translation_vectors(batch, job)
                    if pending is not None:
                        done += pending.result()  # re-raises a failed upsert here, before more work
                        if progress:
                            progress(done, total)
                    pending = writer.submit(self._upsert, target.name, batch, vectors, translations, job, spec)
            if pending is not None:
                done += pending.result()
                if progress:
                    progress(done, total)
        for job in work:
            for batch in _batches(job.resparse, self.settings.upsert_batch_size):
                translations = self._translation_vectors([c for c in batch if c.id in job.translate], job)
                updates = [
                    SparseUpdate(c.id, job.sparse_vectors(c), self._payload(c, job, spec), translations.get(c.id))
                    for c in batch
                ]
                self.store.update_sparse(target.name, updates)
                if progress and translations:
                    done += len(translations)
                    progress(done, total)
            # Stale points go only after the new ones are in: a run that fails before this point loses nothing.
            if job.stale:
                self.store.delete(target.name, sorted(job.stale))
        # The embedded store indexes only when asked (a server does it in the background): before readers see it.
        self.store.optimize(target.name)

        if target.new:
            self._verify(target.name, work)
            self.store.swap_alias(plan.summary.alias, target.name)

    def _carried_editions(self, previous: str | None, full: bool, besides: str) -> list[tuple[str, list[Ayah]]]:
        """The editions other than ``besides`` to carry over into a new build, with their ayat.

        From the collection the alias points at now; from the source archive when there is none (the
        alias file is missing or damaged) or when, on a full rebuild, it cannot be read: its error says
        ``tafsir ingest --full`` repairs, so the repair must not fail on the very damage it is meant to
        repair.
        """
        if previous is not None:
            try:
                others = sorted(set(self.store.editions(previous)) - {besides})
                return [(e, stored_ayat(self.store, previous, e)) for e in others]
            except StoreError as exc:
                if not full:
                    raise
                log.warning("cannot read %s to carry its other editions over (%s)", previous, exc)
        if self.archive is None:
            return []
        archived = [e for e in self.archive.editions() if e != besides]
        if archived:
            log.warning("carrying over %s from the source archive %s", ", ".join(archived), self.archive.folder)
        loaded = [self.archive.load(e) for e in archived]
        return [(s.edition, list(s.ayat)) for s in loaded if s is not None]

    def _archive(self, work: list[EditionWork], source: Source) -> None:
        """Keep a copy of each edition written and note this run of ``source``'s edition (see
        ingest/archive.py); a failure here fails no run."""
        if self.archive is None:
            return
        for job in work:
            try:
                self.archive.save(Source(job.edition, "archive", tuple(job.ayat)))
            except OSError as exc:
                log.warning("could not keep a copy of edition %r in %s: %s", job.edition, self.archive.folder, exc)
        try:
            self.archive.record_run(source, datetime.now(UTC).isoformat(timespec="seconds"))
        except OSError as exc:
            log.warning("could not note the run of edition %r in %s: %s", source.edition, self.archive.folder, exc)

    def _refuse_another_model(self, alias: str, spec: CollectionSpec) -> None:
        """An incremental run never mixes models: another model (or other weights under the same name) than
        the one that built the live collection is refused, naming both and `tafsir ingest --rebuild`."""
        current = self.store.resolve_alias(alias)
        info = self.store.collection_info(current) if current is not None else None
        if info is not None and info.spec is not None and info.spec.model != spec.model:
            raise ModelMismatchError(info.name, alias, info.spec.model, self.embedder)

    # --- what each point holds, and the hashes that say when to rewrite it --------------------------------

    @staticmethod
    def _dense_hash(chunk: Chunk, spec: CollectionSpec) -> str:
        """What the dense vector is computed from: the chunk's text behind its heading, and the model and chunking."""
        return content_hash(chunk.model_text, spec.fingerprint)

    @staticmethod
    def _legacy_content_hash(chunk: Chunk, ayah: Ayah, spec: CollectionSpec) -> str:
        """The ``content_hash`` of points written before ``dense_hash`` existed (text, translation, Arabic)."""
        return content_hash(chunk.text, ayah.translation or "", ayah.arabic or "", spec.fingerprint)

    def _content_hash(self, chunk: Chunk, ayah: Ayah, spec: CollectionSpec) -> str:
        """Everything of its own ayah that the point holds (payload and sparse vectors)."""
        return content_hash(
            self._legacy_content_hash(chunk, ayah, spec),
            ayah.translation_2019 or "",
            ayah.transliteration or "",
            self.settings.translation,  # which wording `translation` holds
            # only where there is one: a source without an English translation keeps its hashes
            *([ayah.translation_en] if ayah.translation_en else []),
        )

    @staticmethod
    def _dense_tr_hash(ayah: Ayah, spec: CollectionSpec) -> str | None:
        """What the translation vector is computed from: the translation, and the model; None when there is none."""
        text = translation_text(ayah)
        return content_hash(DENSE_TRANSLATION, text, spec.fingerprint) if text else None

    def _translation_vectors(self, batch: Sequence[Chunk], job: EditionWork) -> dict[str, list[float]]:
        """The translation vector of each chunk of ``batch`` whose ayah has a translation, by chunk id; each text is
        embedded once (the chunks of one ayah share it)."""
        texts = {chunk.id: text for chunk in batch if (text := job.translation(chunk))}
        unique = list(dict.fromkeys(texts.values()))
        if not unique:
            return {}
        vectors = self.embedder.encode_documents(unique, self.settings.embed_batch_size)
        by_text = {text: vector.tolist() for text, vector in zip(unique, vectors, strict=True)}
        return {chunk_id: by_text[text] for chunk_id, text in texts.items()}

    def _dense_is_current(self, held: StoredHash, chunk: Chunk, ayah: Ayah, spec: CollectionSpec) -> bool:
        if held.dense_hash is not None:
            return held.dense_hash == self._dense_hash(chunk, spec)
        # A point from before dense_hash: its content_hash covered the text with the translation and the
        # Arabic. If that still matches, the text (hence the dense vector) is unchanged: upgrading re-embeds
        # nothing. If the translation or the Arabic changed too, the text may have: embed (cautious).
        return held.content_hash == self._legacy_content_hash(chunk, ayah, spec)

    def _payload(self, chunk: Chunk, job: EditionWork, spec: CollectionSpec) -> dict[str, Any]:
        """The point's payload, but ``ingested_at``: the time its dense vector was made."""
        ayah = job.ayah(chunk)
        info = surah_info(chunk.surah)
        wordings = {TRANSLATION_2019: ayah.translation_2019, TRANSLATION_LEGACY: ayah.translation}
        return {
            "text": chunk.text,
            "edition": chunk.edition,
            "surah": chunk.surah,
            "surah_name": info.name,
            "surah_name_ar": info.name_ar,
            "ayah": chunk.ayah,
            "chunk": chunk.chunk,
            "chunks": chunk.chunks,
            "translation": shown_translation(wordings, self.settings.translation),
            **wordings,
            "transliteration": ayah.transliteration,
            TRANSLATION_EN: ayah.translation_en,
            "arabic": ayah.arabic,
            "char_start": chunk.char_start,
            "char_end": chunk.char_end,
            "tokens": chunk.tokens,
            "dense_hash": self._dense_hash(chunk, spec),
            "dense_tr_hash": self._dense_tr_hash(ayah, spec),
            "content_hash": self._content_hash(chunk, ayah, spec),
            "sparse_hash": job.sparse_hash(chunk),
            "model": spec.model,
        }

    def _upsert(
        self,
        collection: str,
        batch: Sequence[Chunk],
        vectors: Sequence,
        translations: dict[str, list[float]],
        job: EditionWork,
        spec: CollectionSpec,
    ) -> int:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        points = [
            PointToStore(
                chunk.id,
                vector.tolist(),
                job.sparse_vectors(chunk),
                {**self._payload(chunk, job, spec), "ingested_at": now},
                translations.get(chunk.id),
            )
            for chunk, vector in zip(batch, vectors, strict=True)
        ]
        self.store.upsert(collection, points)
        self._unindexed += len(points)
        if self._unindexed >= INDEX_EVERY:
            # The embedded store indexes only when asked: a run of millions of points would otherwise keep them
            # all in one appendable segment, its BM25 postings in RAM (docs/SCALING.md, "Index settings").
            self.store.optimize(collection)
            self._unindexed = 0
        return len(points)

    def _verify(self, collection: str, work: list[EditionWork]) -> None:
        """Before readers move: every edition holds exactly the chunks this run produced."""
        for job in work:
            stored = self.store.count(collection, PointFilter(editions=[job.edition]))
            if stored != len(job.chunks):
                raise StoreError(
                    f"collection {collection} holds {stored} points of edition {job.edition}, "
                    f"expected {len(job.chunks)}; "
                    "the alias was not moved. Run `tafsir ingest` again to complete it."
                )

    def _drop_superseded(self, alias: str, keep: str) -> list[str]:
        """Drop the collection the alias left and builds that an interrupted run left unfinished."""
        pattern = _build_pattern(alias)
        dropped = []
        for name in self.store.list_collections():
            if name != keep and pattern.match(name):
                self.store.drop_collection(name)
                dropped.append(name)
        return dropped


def translation_text(ayah: Ayah) -> str | None:
    """The translation the ``dense_tr`` vector embeds: the 2019 wording where there is one (measured, issue 24:
    docs/BENCHMARKS.md, "Levers"), else the source's own."""
    text = (ayah.translation_2019 or ayah.translation or "").strip()
    return text or None


def ayat_index(ayat: Sequence[Ayah]) -> dict[tuple[int, int], Ayah]:
    return {(a.surah, a.ayah): a for a in ayat}
