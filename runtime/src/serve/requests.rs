//! [`serve_requests`]: one plain subscription, a permit taken before a message is read
//! (see [`super`]'s module docs for when that is enough).

use std::future::Future;
use std::sync::Arc;

use async_nats::{Message, Subscriber};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::drain::within_drain_wait;
use crate::shutdown::Shutdown;

/// Runs `handle` for every message on `subscription`, at most `concurrency` at a time,
/// until `shutdown` fires; then stops new deliveries (for at most
/// [`DRAIN_WAIT`](super::DRAIN_WAIT)) and finishes what was received.
///
/// async-nats 0.51 forgets a draining subscription one read after writing the UNSUB rather
/// than at the PONG, so a request routed here in that instant can go unanswered; clients
/// retry on timeout (idempotently, for orders).
pub async fn serve_requests<F, Fut>(
    mut subscription: Subscriber,
    concurrency: usize,
    shutdown: Shutdown,
    handle: F,
) where
    F: Fn(Message) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    loop {
        // Capacity first: a request is taken off the subscription only when it can start.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
        };
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = subscription.next() => message,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {
                drop(permit);
                continue;
            }
        };
        let Some(message) = message else { break };
        let work = handle(message);
        in_flight.spawn(async move {
            work.await;
            drop(permit);
        });
    }
    within_drain_wait(async {
        if let Err(error) = subscription.drain().await {
            tracing::warn!(%error, "drain failed");
        }
        while let Some(message) = subscription.next().await {
            in_flight.spawn(handle(message));
        }
    })
    .await;
    while in_flight.join_next().await.is_some() {}
}
