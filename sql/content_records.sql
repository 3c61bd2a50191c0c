-- content_records: every collected post and article, RANGE-partitioned by month on published_at.
-- Run by migration 001_initial_schema; mirrored by observatory_pipelines.core.models.ContentRecord.
-- Alembic cannot express PARTITION BY, hence raw DDL.
--
-- PostgreSQL requires the partition key in every unique constraint, so published_at is part of
-- the primary key and of the corpus key, and can never be NULL.
-- Uniqueness is per corpus (query design), so two designs that collect the same post keep a copy
-- each, with their own search_terms_matched.
-- The key below includes published_at, so on its own it cannot keep one row per item when an
-- item's date changes: migration 007 adds content_items, which registers each item once.

CREATE TABLE content_records (
    id                       uuid             NOT NULL DEFAULT gen_random_uuid(),
    published_at             timestamptz      NOT NULL,
    platform                 text             NOT NULL,
    arena                    text             NOT NULL,
    platform_id              text             NOT NULL,
    content_type             text             NOT NULL DEFAULT 'post',
    url                      text,
    text_content             text,
    title                    text,
    language                 text,
    collected_at             timestamptz      NOT NULL DEFAULT now(),
    author_platform_id       text,
    author_display_name      text,
    author_id                uuid,
    pseudonymized_author_id  text,
    views_count              bigint,
    likes_count              bigint,
    shares_count             bigint,
    comments_count           bigint,
    engagement_score         double precision,
    collection_run_id        uuid,
    query_design_id          uuid             NOT NULL,
    search_terms_matched     text[]           NOT NULL DEFAULT '{}'::text[],
    collection_tier          text             NOT NULL DEFAULT 'free',
    raw_metadata             jsonb            NOT NULL DEFAULT '{}'::jsonb,
    media_urls               text[]           NOT NULL DEFAULT '{}'::text[],
    content_hash             text,
    simhash                  bigint,
    CONSTRAINT pk_content_records PRIMARY KEY (id, published_at),
    CONSTRAINT uq_content_corpus_item UNIQUE (query_design_id, platform, platform_id, published_at),
    CONSTRAINT fk_content_records_author_id_actors
        FOREIGN KEY (author_id) REFERENCES actors (id) ON DELETE SET NULL,
    CONSTRAINT fk_content_records_collection_run_id_collection_runs
        FOREIGN KEY (collection_run_id) REFERENCES collection_runs (id) ON DELETE SET NULL,
    CONSTRAINT fk_content_records_query_design_id_query_designs
        FOREIGN KEY (query_design_id) REFERENCES query_designs (id) ON DELETE CASCADE
) PARTITION BY RANGE (published_at);

-- Indexes on the parent are created on every partition, present and future.
CREATE INDEX idx_content_platform  ON content_records (platform);
CREATE INDEX idx_content_arena     ON content_records (arena);
CREATE INDEX idx_content_published ON content_records (published_at);
CREATE INDEX idx_content_query     ON content_records (query_design_id);
CREATE INDEX idx_content_hash      ON content_records (content_hash);
CREATE INDEX idx_content_author    ON content_records (author_id);
CREATE INDEX idx_content_terms     ON content_records USING gin (search_terms_matched);
-- jsonb_path_ops: smaller and faster for containment (@>), the only operator we query with.
CREATE INDEX idx_content_metadata  ON content_records USING gin (raw_metadata jsonb_path_ops);
-- A query uses this index only if it repeats the expression exactly
-- (models.content.FULLTEXT_DOCUMENT_SQL).
CREATE INDEX idx_content_fulltext  ON content_records USING gin (
    to_tsvector('danish', coalesce(title, '') || ' ' || coalesce(text_content, ''))
);

-- Monthly partitions are [first day 00:00 UTC, next month's first day 00:00 UTC), named to match
-- the Dagster monthly partition keys. The explicit +00 keeps the bounds in UTC whatever the
-- session TimeZone. Later months are created ahead of time by the partition maintenance job.
CREATE TABLE content_records_2026_02 PARTITION OF content_records
    FOR VALUES FROM ('2026-02-01 00:00:00+00') TO ('2026-03-01 00:00:00+00');
CREATE TABLE content_records_2026_03 PARTITION OF content_records
    FOR VALUES FROM ('2026-03-01 00:00:00+00') TO ('2026-04-01 00:00:00+00');
CREATE TABLE content_records_2026_04 PARTITION OF content_records
    FOR VALUES FROM ('2026-04-01 00:00:00+00') TO ('2026-05-01 00:00:00+00');

-- Catches rows outside every monthly partition. A month's partition cannot be created while the
-- default holds rows for that month, so the maintenance job must move them first.
CREATE TABLE content_records_default PARTITION OF content_records DEFAULT;
