//! How far a request's deadline (`Pinnacle-Deadline`) reaches into the engine.
//!
//! A caller that has given up should not hold a worker's capacity while the request waits
//! for a stalled database; and a caller must never be told `DEADLINE_EXCEEDED` ("nothing
//! was done") about a request that went ahead. The line between the two is the request's
//! first credential access: every verb reads, checks and counts before it (the replay
//! lookup, the account and the limits, the rate count, the broker's readiness), and
//! stores, sends or changes an order only after it (place inserts after its credentials
//! are opened, modify and cancel move the order to `PENDING_*` after, and a replay that
//! settles a stale order opens credentials before it asks the broker).
//!
//! [`run`] runs a request until its deadline. If the deadline comes before the request
//! crossed the line, the request is dropped where it waits and the caller is told
//! `DEADLINE_EXCEEDED`; once it crossed (`credentials::open_with` calls [`cross`] just
//! before the audit event), it runs to its end and is answered as usual, however late. A
//! rate count or an ownership taken before the line stays as a crash would leave it: the
//! count expires with its second, the ownership with its lease.
//!
//! The mark lives in a task-local, set by [`run`] around the request, so it needs no
//! parameter through every verb; nothing in a request's path before the line spawns a task
//! of its own (a spawned task would not see the mark).

use std::cell::Cell;
use std::future::Future;

use pinnacle_common::error::{ErrorBody, ErrorCode};
use tokio::time::Instant;

tokio::task_local! {
    /// Whether the running request has crossed the line (opened credentials).
    static CROSSED: Cell<bool>;
}

/// Runs `request` until `deadline` (none: to its end). A request still short of its first
/// credential access at the deadline is dropped and answered `DEADLINE_EXCEEDED`; one past
/// it is awaited to its end.
///
/// Not an `async fn`: the request is boxed before any future of this module holds it, so
/// a task running a request holds it once. (An `async fn` keeps its argument's slot while
/// the request moves on into the scope below: a request handler's task was the size of two
/// requests: 4–5 MiB more peak memory over a 100,000-order benchmark.)
pub fn run<'a, T, F>(
    deadline: Option<Instant>,
    request: F,
) -> impl Future<Output = Result<T, ErrorBody>> + 'a
where
    F: Future<Output = Result<T, ErrorBody>> + 'a,
    T: 'a,
{
    let mut request = Box::pin(request);
    CROSSED.scope(Cell::new(false), async move {
        let Some(deadline) = deadline else {
            return request.await;
        };
        tokio::select! {
            biased;
            answer = &mut request => answer,
            () = tokio::time::sleep_until(deadline) => {
                if CROSSED.with(Cell::get) {
                    request.await
                } else {
                    Err(exceeded())
                }
            }
        }
    })
}

/// Marks the running request as past the line: from here it runs to its end. Outside
/// [`run`] (reconciliation, the sweeps, a request without a deadline) it does nothing.
pub(super) fn cross() {
    let _ = CROSSED.try_with(|crossed| crossed.set(true));
}

/// The answer to a request whose deadline came while it waited short of the line.
fn exceeded() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::DeadlineExceeded,
        "the request's deadline passed while it waited, before any credential was touched; \
         this request did nothing (resend it under the same client_order_id)",
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(50))
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waiting_short_of_the_line_is_answered_at_its_deadline() {
        let started = Instant::now();
        let answer: Result<(), _> = run(soon(), std::future::pending()).await;
        assert_eq!(
            answer.expect_err("refused").code,
            ErrorCode::DeadlineExceeded
        );
        assert_eq!(started.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_line_runs_to_its_end_however_late() {
        let answer = run(soon(), async {
            cross();
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ErrorBody>("placed")
        })
        .await;
        assert_eq!(answer, Ok("placed"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_time_or_without_a_deadline_is_answered_as_usual() {
        let quick = run(soon(), async { Ok::<_, ErrorBody>(1) }).await;
        assert_eq!(quick, Ok(1));
        let slow = run(None, async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, ErrorBody>(2)
        })
        .await;
        assert_eq!(slow, Ok(2));
        // Outside a run, crossing marks nothing and fails nothing.
        cross();
    }
}
