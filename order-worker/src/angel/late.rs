//! An order the broker reports after Pinnacle settled it as `NOT_AT_BROKER`.
//!
//! Reconciliation concludes "not at the broker" only when no worker can still send the
//! order (docs/ARCHITECTURE.md, "One owner per in-flight order"). What it cannot rule out
//! is a request that left a worker which then died and was held on the way past the lease
//! and grace. If Angel One's order-update stream ever reports such an order, its record in
//! Pinnacle is final and cannot take the broker's state, so the finding is made as loud as
//! possible, once per order: the broker's id is recorded on the order (a compare-and-set,
//! so of several workers following the stream one reports it), an error is logged and
//! `pinnacle_orders_found_after_not_at_broker_total` counts it. Later records of the order
//! then match it by that id and change nothing.

use pinnacle_smartapi::tag;
use pinnacle_smartapi::types::OrderRecord;

use crate::engine::Engine;

/// Whether `record` (matching no order by id, nor an in-flight one by tag) is of an order
/// `account_id` settled as `NOT_AT_BROKER`; reports it the first time it is seen.
pub(super) async fn found_after_not_at_broker(
    engine: &Engine,
    account_id: &str,
    record: &OrderRecord,
) -> bool {
    if !record.ordertag.starts_with(tag::PREFIX) || record.orderid.is_empty() {
        return false;
    }
    let settled = match engine.not_at_broker_lately(account_id).await {
        Ok(settled) => settled,
        Err(error) => {
            tracing::warn!(%error, "could not check an unknown order update against settled orders");
            return false;
        }
    };
    let Some(order) = settled
        .iter()
        .find(|o| tag::order_tag(&o.id) == record.ordertag)
    else {
        return false;
    };
    match engine.found_at_broker(&order.id, &record.orderid).await {
        Ok(true) => {}
        // Another worker following the stream reported it first.
        Ok(false) => return true,
        Err(error) => {
            tracing::warn!(order_id = %order.id, %error, "could not record the broker's id on an order settled as NOT_AT_BROKER");
        }
    }
    pinnacle_common::metrics::metrics()
        .orders_found_after_not_at_broker
        .inc();
    tracing::error!(
        order_id = %order.id,
        client_order_id = %order.client_order_id,
        broker_order_id = %record.orderid,
        broker_status = %record.status,
        "an order settled as NOT_AT_BROKER is at the broker: its request arrived after the \
         worker's lease and grace had passed; check the account at the broker"
    );
    true
}
