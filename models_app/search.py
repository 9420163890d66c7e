"""Catalog search: ranked full-text with typo tolerance on PostgreSQL, a plain fallback on SQLite.

PostgreSQL (production):
- full text over name (weight A), description (B) and model card (C) with ``websearch`` syntax
  and ``SearchRank``, on the stored ``search_document`` column (kept by a trigger, GIN-indexed);
- typo tolerance with ``pg_trgm``: ``word_similarity(query, name|tag)`` above the
  ``pg_trgm.word_similarity_threshold`` (0.6 by default, so "custmer churn" finds "customer
  churn"), served by GIN ``gin_trgm_ops`` indexes (migration ``0006_catalog_card_search``); and
  when no name or tag is close, ``word_similarity(query, description)`` (slower: long texts).

SQLite (``make run`` on a laptop): every word must appear (substring, any case) in the name,
description, card or a tag; failing that, names, descriptions and tags are matched word by word
with :func:`word_similarity`, a trigram measure registered as an SQL function on each SQLite
connection, so typos are forgiven there too. It scans every visible row (no index), which is
fine for thousands of models, not for millions; relevance is the trigram similarity only, and
the card is searched by substring but not fuzzily.

On both, typo tolerance applies only when the words as typed find nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache

from django.contrib.postgres.search import (
    SearchQuery,
    SearchRank,
    TrigramWordSimilarity,
)
from django.db import connection
from django.db.models import F, FloatField, Func, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest

SEARCH_CONFIG = "english"
# At most this many words of a query are used (a pasted paragraph is not a search).
MAX_WORDS = 8
MAX_FUZZY_CANDIDATES = 5000  # close names and tags looked at by a typo search
SQLITE_FUZZY_THRESHOLD = 0.5
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters and digits; ``_`` and ``-`` separate words)."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=4096)
def _trigrams(word: str) -> frozenset[str]:
    padded = f"  {word} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def word_similarity(query: str | None, text: str | None) -> float:
    """How well the words of ``query`` are found in ``text``, from 0 to 1, forgiving typos.

    For each query word, the best Jaccard similarity of its trigrams (pg_trgm style, padded) with
    any word of ``text``; the mean over query words. ``custmer`` vs ``customer`` is 0.55,
    ``churn`` vs ``churn`` is 1.
    """
    if not query or not text:
        return 0.0
    query_words = words(query)[:MAX_WORDS]
    text_words = set(words(text))
    if not query_words or not text_words:
        return 0.0
    total = 0.0
    for qw in query_words:
        if qw in text_words:
            total += 1.0
            continue
        tq = _trigrams(qw)
        best = 0.0
        for tw in text_words:
            tt = _trigrams(tw)
            score = len(tq & tt) / len(tq | tt)
            if score > best:
                best = score
        total += best
    return total / len(query_words)


class WordSimilarity(Func):
    """``word_similarity(query, field)``: pg_trgm on PostgreSQL, :func:`word_similarity` on SQLite."""

    function = "modelyard_word_similarity"
    output_field = FloatField()

    def as_postgresql(self, compiler, conn, **extra):
        return super().as_sql(compiler, conn, function="word_similarity", **extra)


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    """``connection_created`` hook: make :func:`word_similarity` callable from SQLite SQL."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            "modelyard_word_similarity", 2, word_similarity, deterministic=True
        )


def search(queryset: QuerySet, value: str) -> tuple[QuerySet, bool]:
    """``queryset`` narrowed to models matching ``value`` and annotated with ``search_rank``.

    Returns ``(queryset, fuzzy)``. The words as typed are tried first; only when they match
    nothing does the search forgive typos (``fuzzy`` is then True, and the page says "close
    matches"). So "number 1" stays exact, while "custmer churn" finds "customer churn".
    """
    value = " ".join(words(value)[:MAX_WORDS])
    if not value:  # only punctuation: nothing to search for
        return queryset, False
    postgres = connection.vendor == "postgresql"
    exact = (_exact_postgresql if postgres else _exact_fallback)(queryset, value)
    if exact.exists():
        return exact, False
    return (_fuzzy_postgresql if postgres else _fuzzy_fallback)(queryset, value), True


def _exact_postgresql(queryset: QuerySet, value: str) -> QuerySet:
    from models_app.models import ModelTag

    query = SearchQuery(value, config=SEARCH_CONFIG, search_type="websearch")
    tag_hits = ModelTag.objects.filter(Q(key__iexact=value) | Q(value__icontains=value)).values("model_id")
    return queryset.annotate(
        search_rank=SearchRank(F("search_document"), query)
        + Value(0.5) * TrigramWordSimilarity(value, "name"),
    ).filter(Q(search_document=query) | Q(pk__in=tag_hits))


def _fuzzy_postgresql(queryset: QuerySet, value: str) -> QuerySet:
    """Names and tags first (short texts: the trigram indexes answer in milliseconds); only when
    they match nothing, descriptions too (long texts: many index candidates to re-check).

    The close names and tags are found by a UNION of one-column queries, each answered by its
    own GIN index: written as one ``OR`` (name, or a tag subquery) the planner scans every row
    and computes ``word_similarity`` on each, 30-40x slower at 10,000 models.
    """
    from models_app.models import ModelTag, RegisteredModel

    close = (
        RegisteredModel.objects.filter(name__trigram_word_similar=value)
        .order_by()
        .values_list("pk", flat=True)
        .union(
            ModelTag.objects.filter(value__trigram_word_similar=value).values_list("model_id", flat=True),
            ModelTag.objects.filter(key__trigram_word_similar=value).values_list("model_id", flat=True),
        )
    )
    ids = list(close[:MAX_FUZZY_CANDIDATES])
    # Visibility applies here: close matches among models the caller cannot see count as none.
    short = queryset.annotate(search_rank=TrigramWordSimilarity(value, "name")).filter(pk__in=ids)
    if ids and short.exists():
        return short
    return queryset.annotate(search_rank=TrigramWordSimilarity(value, "description")).filter(
        description__trigram_word_similar=value
    )


def _exact_fallback(queryset: QuerySet, value: str) -> QuerySet:
    from models_app.models import ModelTag

    every_word = Q()
    for word in words(value):
        every_word &= (
            Q(name__icontains=word)
            | Q(description__icontains=word)
            | Q(card__icontains=word)
            | Q(
                pk__in=ModelTag.objects.filter(Q(key__icontains=word) | Q(value__icontains=word)).values(
                    "model_id"
                )
            )
        )
    return queryset.annotate(search_rank=WordSimilarity(Value(value), "name")).filter(every_word)


def _fuzzy_fallback(queryset: QuerySet, value: str) -> QuerySet:
    from models_app.models import ModelTag

    fuzzy_tags = ModelTag.objects.annotate(
        similarity=Greatest(WordSimilarity(Value(value), "key"), WordSimilarity(Value(value), "value"))
    ).filter(similarity__gte=SQLITE_FUZZY_THRESHOLD)
    return queryset.annotate(
        name_similarity=WordSimilarity(Value(value), "name"),
        description_similarity=WordSimilarity(Value(value), "description"),
        search_rank=Coalesce(F("name_similarity"), 0.0)
        + Value(0.4) * Coalesce(F("description_similarity"), 0.0),
    ).filter(
        Q(name_similarity__gte=SQLITE_FUZZY_THRESHOLD)
        | Q(description_similarity__gte=SQLITE_FUZZY_THRESHOLD)
        | Q(pk__in=fuzzy_tags.values("model_id"))
    )
