"""Who an export names: the one rule every export file follows (CSV, XLSX, NDJSON, Parquet, GEXF
and the manifest).

An export is made at one of two identity levels:

- ``pseudonymised`` (the default, and every design's until it records a legal basis): authors are
  identified by ``pseudonymized_author_id``; ``author_display_name`` is filled only for public
  figures (``privacy.PUBLIC_FIGURE_SQL``: the author is an actor flagged ``is_public_figure``) and
  empty for everyone else; social-platform URLs lose the author's handle (``URL_RULES``: the
  platform's id-only form where one exists, otherwise no URL); ``raw_metadata`` loses the fields
  that identify the author (``AUTHOR_METADATA_KEYS``); GEXF actor labels are the public figure's
  name or the first hex characters of the pseudonymised id, as statistics and networks label them.
- ``identified``: every author's display name, the URL as collected and the whole ``raw_metadata``;
  GEXF actor labels are names. A design may ask for it only by recording a legal basis
  (``query_designs.export_identity = 'identified'`` with ``identity_legal_basis``, which the
  database requires together); the manifest then names the level and the basis. Asking for an
  identified export of a design without one is refused (``IdentityRefused``, one line).

At both levels no e-mail address leaves in an author field: an RSS byline
``redaktion@fjordposten.example.dk (Hanne Krog)`` becomes ``Hanne Krog``, and an address alone
becomes nothing (``EMAIL_FREE_NAME_SQL``).

The rule is SQL, so the writers keep streaming from PostgreSQL: ``column_sql`` gives the
expression a writer selects for a column at a level. Every pattern below is a constant of this
module, written into the statement as a literal (``_literal``), never a value from a user.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from observatory_pipelines.core.analysis.statistics import LABEL_HEX_CHARS
from observatory_pipelines.core.collection.designs import Corpus
from observatory_pipelines.core.collection.privacy import PUBLIC_FIGURE_SQL
from observatory_pipelines.core.platform import months
from observatory_pipelines.core.platform.errors import ConfigError

PSEUDONYMISED = "pseudonymised"
IDENTIFIED = "identified"
LEVELS = (PSEUDONYMISED, IDENTIFIED)

#: raw_metadata keys that identify the author, left out of pseudonymised exports: the platform's
#: own object (it holds the user object: names, handles, bios), the platform's numeric user id,
#: the page a Zeeschuimer capture was made on (often the author's profile), and the accounts an
#: item replies to, quotes, reposts or mentions (``interactions`` keeps their pseudonyms).
AUTHOR_METADATA_KEYS = ("raw", "author_user_id", "source_platform_url", "interaction_accounts")


class IdentityRefused(ConfigError):
    """An identified export was asked for, but the design records no legal basis."""


@dataclass(frozen=True)
class Identity:
    """The identity level of an export, and the legal basis an identified one rests on."""

    level: str = PSEUDONYMISED
    legal_basis: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"unknown export identity {self.level!r}; choose {' or '.join(LEVELS)}")
        if self.level == IDENTIFIED and not (self.legal_basis or "").strip():
            raise IdentityRefused("an identified export needs the legal basis its design records")

    @property
    def identified(self) -> bool:
        return self.level == IDENTIFIED

    def describe(self) -> dict[str, str | None]:
        """What the manifest says about it."""
        return {"level": self.level, "legal_basis": self.legal_basis if self.identified else None}


#: The default: pseudonymised.
DEFAULT = Identity()


def for_corpus(conn: sa.Connection, corpus: Corpus, requested: str | None = None) -> Identity:
    """The identity an export of ``corpus`` is made at: ``requested`` when given, else what the design
    records. Identified needs the design's recorded legal basis; without one it is refused in one line."""
    row = conn.execute(
        sa.text("SELECT export_identity, identity_legal_basis FROM query_designs WHERE id = :id"),
        {"id": corpus.design_id},
    ).one()
    level = requested or row.export_identity
    if level not in LEVELS:
        raise ConfigError(f"unknown export identity {level!r}; choose {' or '.join(LEVELS)}")
    if level == PSEUDONYMISED:
        return Identity()
    basis = row.identity_legal_basis or ""
    if row.export_identity != IDENTIFIED or not basis.strip():
        raise IdentityRefused(
            f"query design '{corpus.slug}' records no legal basis for identified exports, so none is made; "
            "record one (query_designs.export_identity = 'identified', identity_legal_basis = '...') "
            "or export pseudonymised"
        )
    return Identity(IDENTIFIED, basis.strip())


# --- the rule, as SQL over content_records ---------------------------------------------------------


def _literal(text: str) -> str:
    """A constant of this module as an SQL string literal (standard_conforming_strings is on)."""
    # psycopg merges COPY parameters into the statement client-side, where % is a placeholder.
    assert "%" not in text, text
    return "'" + text.replace("'", "''") + "'"


_ADDRESS = r"[^][[:space:]@<>(),;:'\"]+@[^][[:space:]@<>(),;:'\"]+"
#: ``author_display_name`` without any e-mail address: RSS's ``address (Name)`` becomes ``Name``,
#: ``Name <address>`` becomes ``Name``, an address alone becomes NULL.
EMAIL_FREE_NAME_SQL = (
    "nullif(regexp_replace(regexp_replace(regexp_replace(regexp_replace(author_display_name, "
    + _literal(rf"^[[:space:]]*{_ADDRESS}[[:space:]]*\((.*)\)[[:space:]]*$")
    + ", "
    + _literal(r"\1")
    + "), "
    + _literal(rf"<?(mailto:)?{_ADDRESS}>?")
    + ", '', 'g'), "
    + _literal(r"\([[:space:]]*\)|\[[[:space:]]*\]|<[[:space:]]*>")
    + ", '', 'g'), "
    + _literal(r"^[[:space:],;:-]+|[[:space:],;:-]+$")
    + ", '', 'g'), '')"
)


@dataclass(frozen=True)
class UrlRule:
    """How a pseudonymised export shows one platform's URLs: a URL matching ``pattern`` becomes
    ``replacement`` (``\\1``... its groups); any other URL of the platform is left out. Without a
    pattern, every URL of the platform is kept as collected."""

    pattern: str | None
    replacement: str
    #: The rule in words, for docs/exports.md.
    rule: str


#: A URL kept as collected (news sites: the article's address names the outlet, not a person).
_AS_COLLECTED = UrlRule(None, "", "kept as collected: an article's address names the outlet, not a person")

#: Per platform. A platform not listed (TikTok, Threads, Gab, Truth Social, Bluesky, Telegram,
#: LinkedIn, Pinterest, ... and any new one) has no id-only URL form, or none we rely on: no URL.
URL_RULES: dict[str, UrlRule] = {
    "x_twitter": UrlRule(
        r"^https?://(www\.|mobile\.)?(x|twitter)\.com/[^/?#]+/status(es)?/([0-9]+)([/?#].*)?$",
        r"https://x.com/i/status/\4",
        "the id-only form `https://x.com/i/status/<id>`",
    ),
    "instagram": UrlRule(
        r"^https?://(www\.)?instagram\.com/(p|reel|tv)/([A-Za-z0-9_-]+)/?([?#].*)?$",
        r"https://www.instagram.com/\2/\3/",
        "kept as the post's own `https://www.instagram.com/p/<code>/` (`/reel/`, `/tv/` alike; no handle in it)",
    ),
    "douyin": UrlRule(
        r"^https?://(www\.)?douyin\.com/video/([0-9]+)([/?#].*)?$",
        r"https://www.douyin.com/video/\2",
        "kept as `https://www.douyin.com/video/<id>` (no handle in it)",
    ),
    "youtube": UrlRule(
        r"^https?://((www\.|m\.)?youtube\.com/watch\?(.*&)?v=|youtu\.be/)([A-Za-z0-9_-]{11})([&#/?].*)?$",
        r"https://www.youtube.com/watch?v=\4",
        "the id-only form `https://www.youtube.com/watch?v=<id>`",
    ),
    "rss": _AS_COLLECTED,
    "gdelt": _AS_COLLECTED,
}
#: What a platform without a rule gets, in words.
NO_URL = "left out: the URL carries the author's handle and the platform has no id-only form"


def _url_case(rule: UrlRule) -> str:
    if rule.pattern is None:
        return "url"
    pattern = _literal(rule.pattern)
    return f"CASE WHEN url ~ {pattern} THEN regexp_replace(url, {pattern}, {_literal(rule.replacement)}) END"


def _url_sql() -> str:
    cases = "".join(f" WHEN {_literal(platform)} THEN {_url_case(rule)}" for platform, rule in URL_RULES.items())
    return f"CASE platform{cases} END"


def _raw_metadata_sql() -> str:
    keys = "{" + ",".join(AUTHOR_METADATA_KEYS) + "}"
    return f"(raw_metadata - CAST({_literal(keys)} AS text[]))"


def column_sql(name: str, identity: Identity) -> str | None:
    """The expression a writer selects for column ``name`` of ``content_records`` at ``identity``
    (``raw_metadata`` as jsonb), or ``None`` when the rule leaves the column as stored."""
    if name == "author_display_name":
        if identity.identified:
            return EMAIL_FREE_NAME_SQL
        return f"CASE WHEN {PUBLIC_FIGURE_SQL} THEN {EMAIL_FREE_NAME_SQL} END"
    if identity.identified:
        return None
    if name == "url":
        return _url_sql()
    if name == "raw_metadata":
        return _raw_metadata_sql()
    return None


# --- GEXF labels ---------------------------------------------------------------------------------


def actor_labels(engine: sa.Engine, corpus: Corpus, identity: Identity) -> pl.DataFrame:
    """The label of every actor of the corpus (``id``, ``actor_label``), by the rule, from what the
    database holds now: a public figure by the actor's name; anyone else, when pseudonymised, by the
    first hex characters of their pseudonymised id (the smallest of their accounts, as statistics
    labels them); when identified, by the actor's name, else the account's latest display name."""
    start, end = months.month_bounds(corpus.month)
    name_sql = EMAIL_FREE_NAME_SQL
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"""
                SELECT coalesce(author_id::text, pseudonymized_author_id) AS node,
                       min(pseudonymized_author_id) AS pseudonym,
                       bool_or({PUBLIC_FIGURE_SQL}) AS public,
                       max((SELECT canonical_name FROM actors a WHERE a.id = content_records.author_id)) AS actor_name,
                       (array_agg({name_sql} ORDER BY published_at DESC)
                            FILTER (WHERE {name_sql} IS NOT NULL))[1] AS shown
                FROM content_records
                WHERE query_design_id = :design AND published_at >= :start AND published_at < :end
                  AND NOT (raw_metadata ? 'duplicate_of')
                  AND coalesce(author_id::text, pseudonymized_author_id) IS NOT NULL
                GROUP BY 1
                """
            ),
            {"design": corpus.design_id, "start": start, "end": end},
        ).all()
    labels: dict[str, str] = {}
    for row in rows:
        pseudonym = (row.pseudonym or row.node)[:LABEL_HEX_CHARS]
        if row.public and row.actor_name:
            labels[row.node] = row.actor_name
        elif identity.identified:
            labels[row.node] = row.actor_name or row.shown or pseudonym
        else:
            labels[row.node] = pseudonym
    return pl.DataFrame(
        {"id": list(labels), "actor_label": list(labels.values())}, schema={"id": pl.Utf8, "actor_label": pl.Utf8}
    )


def label_actors(nodes: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """``nodes`` (a network's node table) with each actor node labelled from ``labels``
    (``actor_labels``); term and platform nodes keep their labels."""
    if nodes.is_empty() or "type" not in nodes.columns:
        return nodes
    is_actor = pl.col("type") == "actor"
    # An actor the database no longer holds (erased since the network was built) is never named.
    fallback = pl.col("id").str.slice(0, LABEL_HEX_CHARS)
    return (
        nodes.join(labels, on="id", how="left", maintain_order="left")
        .with_columns(label=pl.when(is_actor).then(pl.coalesce("actor_label", fallback)).otherwise(pl.col("label")))
        .drop("actor_label")
    )
