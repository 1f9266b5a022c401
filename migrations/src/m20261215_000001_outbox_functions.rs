//! The outbox relay's statements as PostgreSQL functions whose plans cannot go quadratic:
//! `pinnacle_outbox_claim` (a relay's batch: free heads, then their orders' other rows),
//! `pinnacle_outbox_remove` (published rows) and `pinnacle_outbox_release` (rows given
//! back after a failed publish), each one call.
//!
//! Why: the outbox is a queue, empty nearly all the time, so the statistics PostgreSQL
//! keeps for it say "empty", and a prepared statement's generic plan, made while it was,
//! is kept. For the relay's statements as they were (an anti-join finding each order's
//! oldest row; `id IN (sub-select)` taking the locks in id order) that plan is a nested
//! loop that scans the table once per row: harmless at ten rows, minutes at ten thousand,
//! which is what a JetStream outage leaves behind (and its `LIMIT` sub-select, run again
//! for every row, claimed more than a batch). Measured on PostgreSQL 15 with the plans
//! cached on an empty table: the old claim took 15 s for a 9,000-row backlog, growing with
//! its square; these take 18–24 ms for a claim, 4 ms for a removal and 9 ms for a release
//! with 100,000 rows waiting, and about 4 ms for a claim of 200 rows (51 orders), as the
//! old statements did.
//!
//! How: no statement joins the table to itself. A sub-select runs once, as an init plan
//! (`id = ANY(ARRAY(SELECT …))`), and "the oldest row of its order" is a sub-plan that is
//! one index probe per row (`id = (SELECT min(id) … WHERE order_id = o.order_id)`). Each
//! function plans its statements afresh at each call (`plan_cache_mode =
//! force_custom_plan`: a plan made for an empty table takes any index for a primary-key
//! lookup, and walks all of it) with `enable_seqscan` off, so the scans are index scans
//! whatever the statistics say, and the walk for heads, in id order, stops at the batch.
//! Locks are taken as before: heads with `FOR UPDATE SKIP LOCKED` (a head another relay
//! is taking is theirs), everything else in id order, so relays never deadlock. SQLite
//! plans by its indexes whatever it knows of the table, and keeps its statements
//! (`order-worker/src/engine/outbox.rs`). `outbox::tests::a_backlog_drains_in_linear_time…`
//! drains 20,000 rows after caching the plans on an empty table.

use sea_orm_migration::prelude::*;

/// Creates the functions on PostgreSQL.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, &[CLAIM, REMOVE, RELEASE]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(
            manager,
            &[
                "DROP FUNCTION IF EXISTS pinnacle_outbox_release(bigint[]); \
             DROP FUNCTION IF EXISTS pinnacle_outbox_remove(bigint[]); \
             DROP FUNCTION IF EXISTS pinnacle_outbox_claim(text, bigint, bigint, integer)",
            ],
        )
        .await
    }
}

/// Claims for `p_token`, until `p_until`, up to `p_batch` orders' events: walking the rows
/// free at `p_now` oldest first, each that is its order's oldest row (its head) and that
/// no other relay is taking; then every row of those orders that is free or already
/// `p_token`'s. Returns every row it holds, heads and followers.
const CLAIM: &str = r"
CREATE OR REPLACE FUNCTION pinnacle_outbox_claim(
    p_token text, p_now bigint, p_until bigint, p_batch integer)
RETURNS SETOF order_outbox
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    -- The heads: each free row that is its order's oldest (the sub-plan is one index
    -- probe per row, and the walk in id order stops at the batch).
    UPDATE order_outbox SET claimed_by = p_token, claimed_until_ms = p_until
     WHERE id = ANY(ARRAY(
             SELECT o.id FROM order_outbox o
              WHERE (o.claimed_until_ms IS NULL OR o.claimed_until_ms < p_now)
                AND o.id = (SELECT min(older.id) FROM order_outbox older
                             WHERE older.order_id = o.order_id)
              ORDER BY o.id LIMIT p_batch
                FOR UPDATE SKIP LOCKED))
       AND (claimed_until_ms IS NULL OR claimed_until_ms < p_now);
    -- The followers: nobody else can take them (not heads, and their head is held here).
    RETURN QUERY
    UPDATE order_outbox SET claimed_by = p_token, claimed_until_ms = p_until
     WHERE id = ANY(ARRAY(
             SELECT f.id FROM order_outbox f
              WHERE f.order_id = ANY(ARRAY(
                      SELECT h.order_id FROM order_outbox h WHERE h.claimed_by = p_token))
                AND (f.claimed_by = p_token OR f.claimed_until_ms IS NULL
                     OR f.claimed_until_ms < p_now)
              ORDER BY f.id
                FOR UPDATE))
       AND (claimed_by = p_token OR claimed_until_ms IS NULL OR claimed_until_ms < p_now)
    RETURNING *;
END
$$";

/// Deletes the published rows `p_ids`, locking them in id order (an index scan of
/// `= ANY(…)` visits its keys sorted).
const REMOVE: &str = r"
CREATE OR REPLACE FUNCTION pinnacle_outbox_remove(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    DELETE FROM order_outbox
     WHERE id = ANY(ARRAY(SELECT id FROM order_outbox WHERE id = ANY(p_ids) ORDER BY id FOR UPDATE));
END
$$";

/// Clears the claim on rows `p_ids`, so that the next poll (of any relay) may take them.
const RELEASE: &str = r"
CREATE OR REPLACE FUNCTION pinnacle_outbox_release(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    UPDATE order_outbox SET claimed_by = NULL, claimed_until_ms = NULL
     WHERE id = ANY(ARRAY(SELECT id FROM order_outbox WHERE id = ANY(p_ids) ORDER BY id FOR UPDATE));
END
$$";
