//! Backpressure by capacity against a real nats-server: a queue-group member holds at most
//! its bound, leaves the group when full and rejoins at the low-water mark, so a burst
//! goes to the member with room; every request gets exactly one reply. First with bare
//! members (`serve::Member`), then with two order workers, one of them slow (concurrency 1,
//! a broker that takes 300 ms).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, Message};
use pinnacle_common::serve::{Admission, Capacity, Member, Pressure, QueueGroup};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_tests::{eventually, TestNats};

const QUEUE: &str = "bp-members";

/// Who handled which request, and how often.
type Ledger = Arc<Mutex<HashMap<String, Vec<&'static str>>>>;

async fn connect(nats: &TestNats) -> Client {
    async_nats::connect(nats.url()).await.expect("connects")
}

/// Starts a member named `name` on its own connection; each request waits for `work`
/// (its duration, or a gate) before it is answered with the member's name.
async fn member<W, WF>(
    nats: &TestNats,
    subject: &str,
    name: &'static str,
    capacity: Capacity,
    ledger: Ledger,
    shutdown: Shutdown,
    work: W,
) -> (Arc<Pressure>, tokio::task::JoinHandle<()>)
where
    W: Fn() -> WF + Send + Sync + 'static,
    WF: std::future::Future<Output = ()> + Send + 'static,
{
    let client = connect(nats).await;
    let member = Member::join(
        QueueGroup {
            client: client.clone(),
            subject: subject.to_string(),
            queue: QUEUE.to_string(),
        },
        capacity,
        "test-member",
        Arc::default(),
    )
    .await
    .expect("joins");
    client.flush().await.expect("flush");
    let pressure = member.pressure();
    let work = Arc::new(work);
    let replies = client.clone();
    let serving = member.serve(shutdown, move |message: Message, admission| {
        let (client, ledger, work) = (replies.clone(), ledger.clone(), work.clone());
        assert_eq!(admission, Admission::Admitted, "no senders, no refusals");
        async move {
            let id = String::from_utf8_lossy(&message.payload).to_string();
            ledger
                .lock()
                .expect("ledger")
                .entry(id)
                .or_default()
                .push(name);
            work().await;
            if let Some(reply) = message.reply {
                client.publish(reply, name.into()).await.expect("reply");
            }
        }
    });
    let task = tokio::spawn(async move {
        serving.await;
        // The last replies leave before the connection is dropped, as the worker's run does.
        client.flush().await.expect("flush");
    });
    (pressure, task)
}

/// Sends `id` until a member takes it: "no responders" means every member was full (or
/// none was running) and nothing was delivered, so sending again cannot duplicate it.
async fn request(client: &Client, subject: &str, id: String) -> (String, u32) {
    let mut refused = 0;
    loop {
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            client.request(subject.to_string(), id.clone().into()),
        )
        .await
        .expect("answered in time (a request was lost)");
        match sent {
            Ok(reply) => return (String::from_utf8_lossy(&reply.payload).to_string(), refused),
            Err(error) if error.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(error) => panic!("request {id} failed: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_goes_to_the_member_with_room_and_every_request_is_answered_once() {
    let nats = TestNats::start();
    let subject = "bp.burst";
    let ledger: Ledger = Arc::default();
    let shutdown = Shutdown::new();
    let slow_capacity = Capacity {
        concurrency: 1,
        queue: 3,
    };
    let (slow, slow_task) = member(
        &nats,
        subject,
        "slow",
        slow_capacity,
        ledger.clone(),
        shutdown.clone(),
        || tokio::time::sleep(Duration::from_millis(40)),
    )
    .await;
    let (fast, fast_task) = member(
        &nats,
        subject,
        "fast",
        Capacity {
            concurrency: 16,
            queue: 48,
        },
        ledger.clone(),
        shutdown.clone(),
        || async {},
    )
    .await;

    // 600 requests from 48 concurrent callers.
    let client = connect(&nats).await;
    let total = 600;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..48 {
        let (client, next) = (client.clone(), next.clone());
        callers.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    return answers;
                }
                let id = format!("req-{n}");
                let (by, refused) = request(&client, subject, id.clone()).await;
                answers.push((id, by, refused));
            }
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = callers.join_next().await {
        answers.extend(done.expect("caller"));
    }

    assert_eq!(answers.len(), total, "every request answered");
    let ledger = ledger.lock().expect("ledger").clone();
    assert_eq!(ledger.len(), total, "every request handled");
    for (id, by, _) in &answers {
        let handled = &ledger[id];
        assert_eq!(handled.len(), 1, "{id} handled once: {handled:?}");
        assert_eq!(handled[0], by.as_str(), "{id} answered by its handler");
    }
    let by_slow = answers.iter().filter(|(_, by, _)| by == "slow").count();
    let by_fast = total - by_slow;
    let refused: u32 = answers.iter().map(|(_, _, r)| r).sum();
    eprintln!(
        "fast {by_fast}, slow {by_slow}, no-responders retries {refused}, slow peak held {}, \
         slow left {} rejoined {}",
        slow.peak_held(),
        slow.left(),
        slow.rejoined()
    );
    assert!(
        slow.peak_held() <= slow_capacity.bound(),
        "the slow member held {} > its bound {}",
        slow.peak_held(),
        slow_capacity.bound()
    );
    assert!(fast.peak_held() <= 64);
    assert!(
        by_fast >= 4 * by_slow,
        "the fast member takes most: fast {by_fast}, slow {by_slow}"
    );
    assert!(slow.left() >= 1, "the slow member left the group when full");
    assert!(slow.rejoined() >= 1, "and came back");
    assert_eq!(slow.received() + fast.received(), total as u64);
    shutdown.cancel();
    slow_task.await.expect("slow member stops");
    fast_task.await.expect("fast member stops");
    assert_eq!(slow.held() + fast.held(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_member_leaves_the_group_and_rejoins_at_the_low_water_mark() {
    let nats = TestNats::start();
    let subject = "bp.pause";
    let ledger: Ledger = Arc::default();
    let shutdown = Shutdown::new();
    // Each request waits for one permit of the gate.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let capacity = Capacity {
        concurrency: 1,
        queue: 1,
    };
    assert_eq!((capacity.bound(), capacity.min_grant()), (2, 1));
    let held_gate = gate.clone();
    let (pressure, task) = member(
        &nats,
        subject,
        "gated",
        capacity,
        ledger.clone(),
        shutdown.clone(),
        move || {
            let gate = held_gate.clone();
            async move { gate.acquire().await.expect("gate").forget() }
        },
    )
    .await;
    let client = connect(&nats).await;
    let ask = |id: &str| {
        let (client, id) = (client.clone(), id.to_string());
        tokio::spawn(async move { client.request(subject.to_string(), id.into()).await })
    };

    // Two requests fill it: one running, one queued (sent in turn, so "one" runs).
    let first = ask("one");
    eventually(Duration::from_secs(10), "one held", || async {
        (pressure.held() == 1).then_some(())
    })
    .await;
    let second = ask("two");
    eventually(Duration::from_secs(10), "the member to leave", || async {
        (pressure.left() == 1).then_some(())
    })
    .await;
    assert_eq!((pressure.held(), pressure.queued()), (2, 1));
    // Out of the group: with no other member the server refuses at once; nothing queues.
    let refused = client
        .request(subject.to_string(), "three".into())
        .await
        .expect_err("no member has room");
    assert_eq!(
        refused.kind(),
        async_nats::client::RequestErrorKind::NoResponders
    );
    assert_eq!(pressure.received(), 2);

    // One answered: at the low-water mark (1 held) it rejoins and takes requests again.
    gate.add_permits(1);
    assert_eq!(
        &first.await.expect("task").expect("reply").payload[..],
        b"gated"
    );
    eventually(Duration::from_secs(10), "the member to rejoin", || async {
        (pressure.rejoined() == 1).then_some(())
    })
    .await;
    // The grant's SUB may still be on its way; until the server has it, it refuses.
    gate.add_permits(2);
    let fourth = eventually(Duration::from_secs(10), "a new request taken", || {
        let client = client.clone();
        async move {
            match client.request(subject.to_string(), "four".into()).await {
                Err(e) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => None,
                other => Some(other),
            }
        }
    })
    .await;
    assert_eq!(&fourth.expect("reply").payload[..], b"gated");
    assert_eq!(
        &second.await.expect("task").expect("reply").payload[..],
        b"gated"
    );

    // Shutdown with requests held: every one is still answered.
    let retried = |id: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { request(&client, subject, id.to_string()).await })
    };
    // One at a time: two requests racing for a grant's last slot while no member has
    // another would see the server drop one (docs/ARCHITECTURE.md).
    let fifth = retried("five");
    eventually(Duration::from_secs(10), "five held", || async {
        (pressure.held() == 1).then_some(())
    })
    .await;
    let sixth = retried("six");
    eventually(Duration::from_secs(10), "two held", || async {
        (pressure.held() == 2).then_some(())
    })
    .await;
    assert!(pressure.peak_held() <= capacity.bound());
    shutdown.cancel();
    gate.add_permits(2);
    for asked in [fifth, sixth] {
        assert_eq!(asked.await.expect("task").0, "gated");
    }
    task.await.expect("member stops");
    assert_eq!(pressure.held(), 0);
    let ledger = ledger.lock().expect("ledger").clone();
    let mut handled: Vec<_> = ledger.keys().cloned().collect();
    handled.sort();
    assert_eq!(handled, ["five", "four", "one", "six", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sender_cannot_take_the_room_every_other_sender_needs() {
    let nats = TestNats::start();
    let shutdown = Shutdown::new();
    // Bound 8: half full at 4, and a share of 2 per sender.
    let capacity = Capacity {
        concurrency: 2,
        queue: 6,
    };
    let share = capacity.sender_share();
    assert_eq!(share, 2);
    let client = connect(&nats).await;
    let member = Member::join(
        QueueGroup {
            client: client.clone(),
            subject: "fair.>".to_string(),
            queue: QUEUE.to_string(),
        },
        capacity,
        "test-member",
        Arc::default(),
    )
    .await
    .expect("joins")
    .with_senders(|subject| subject.split('.').nth(1), share);
    client.flush().await.expect("flush");
    let pressure = member.pressure();
    // Served requests wait for the gate; refusals are answered at once.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (replies, served_gate) = (client.clone(), gate.clone());
    let admissions: Arc<Mutex<Vec<(String, Admission)>>> = Arc::default();
    let seen = admissions.clone();
    let serving = tokio::spawn(member.serve(
        shutdown.clone(),
        move |message: Message, admission| {
            let (client, gate) = (replies.clone(), served_gate.clone());
            seen.lock()
                .expect("admissions")
                .push((message.subject.to_string(), admission));
            async move {
                let answer = match admission {
                    Admission::Admitted => {
                        gate.acquire().await.expect("gate").forget();
                        "served"
                    }
                    Admission::OverShare { .. } => "refused",
                };
                if let Some(reply) = message.reply {
                    client.publish(reply, answer.into()).await.expect("reply");
                }
            }
        },
    ));
    // Resends on "no responders": a burst can outrun the member's next grant.
    let ask = |subject: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { request(&client, subject, "x".to_string()).await.0 })
    };

    // Mallory sends 20 at once: the member takes 4 of hers (until half full), then
    // refuses the rest at once instead of holding them until it is full.
    let mallory: Vec<_> = (0..20).map(|_| ask("fair.mallory.list")).collect();
    eventually(
        Duration::from_secs(10),
        "16 of mallory's refused",
        || async { (pressure.over_share() == 16).then_some(()) },
    )
    .await;
    assert_eq!(pressure.held(), 4, "mallory's four wait for the gate");

    // Bob still gets in, up to his own share, while mallory's four wait.
    let bob = [ask("fair.bob.place"), ask("fair.bob.place")];
    eventually(Duration::from_secs(10), "bob's two held", || async {
        (pressure.held() == 6).then_some(())
    })
    .await;
    let third = ask("fair.bob.place");
    assert_eq!(
        third.await.expect("task"),
        "refused",
        "bob's third is over his share"
    );
    assert!(pressure.peak_held() <= capacity.bound());
    gate.add_permits(100);
    for asked in bob {
        assert_eq!(asked.await.expect("task"), "served");
    }
    let mut answers = HashMap::<String, usize>::new();
    for asked in mallory {
        *answers.entry(asked.await.expect("task")).or_default() += 1;
    }
    assert_eq!(answers["served"], 4, "{answers:?}");
    assert_eq!(answers["refused"], 16, "{answers:?}");
    assert_eq!(pressure.over_share(), 17);
    let admissions = admissions.lock().expect("admissions").clone();
    assert_eq!(
        admissions.len(),
        23,
        "every request handed over exactly once"
    );
    for (subject, admission) in &admissions {
        if let Admission::OverShare { held, share } = admission {
            assert!(*held >= 2 && *share == 2, "{subject}: {admission:?}");
        }
    }
    shutdown.cancel();
    serving.await.expect("member stops");
    assert_eq!(pressure.held(), 0);
}

/// Sends `payload` on `orders.<user>.<verb>` with `user`'s token: the reply, or why none
/// came ("no responders"); no answer at all within 30 s means a request was lost.
async fn send_as(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    verb: &str,
    payload: bytes::Bytes,
) -> Result<Message, async_nats::RequestError> {
    use pinnacle_common::subjects::{self, headers};
    let mut hdrs = async_nats::HeaderMap::new();
    hdrs.insert(
        headers::AUTHORIZATION,
        format!("Bearer {}", user.token).as_str(),
    );
    tokio::time::timeout(
        Duration::from_secs(30),
        stack
            .client
            .request_with_headers(subjects::order(&user.id, verb), hdrs, payload),
    )
    .await
    .unwrap_or_else(|_| panic!("{verb} answered in time (a request was lost)"))
}

/// Places `order` for `user`, resending on "no responders" (every worker full) until a
/// worker takes it; the reply as JSON, and how many times there was no room.
async fn place_retrying(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    order: &pinnacle_common::model::OrderRequest,
) -> (serde_json::Value, u32) {
    let payload = bytes::Bytes::from(rmp_serde::to_vec_named(order).expect("encode"));
    let mut no_room = 0;
    loop {
        match send_as(stack, user, "place", payload.clone()).await {
            Ok(reply) => {
                let reply = rmp_serde::from_slice(&reply.payload).expect("reply decodes");
                return (reply, no_room);
            }
            Err(e) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                no_room += 1;
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("place failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_worker_holds_its_bound_and_the_fast_one_takes_the_burst() {
    use pinnacle_common::config::{DatabaseSettings, WorkerSettings};
    use pinnacle_common::entities::orders;
    use pinnacle_order_worker::paper::PaperBroker;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let stack = pinnacle_tests::TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let trader = stack.trader("burst").await;
    // The burst is about delivery, not the per-user order rate.
    stack.lift_order_rate(&trader.id, 1_000_000).await;

    // A second worker in the same queue group: one request at a time, three queued, and
    // a broker that takes 300 ms per place.
    let capacity = Capacity {
        concurrency: 1,
        queue: 3,
    };
    let settings = WorkerSettings {
        concurrency: capacity.concurrency,
        queue_depth: capacity.queue,
        // One trader's burst, spread over workers: not the per-user share, which would
        // refuse most of it on a worker this small.
        sender_share: Some(0),
        ..pinnacle_tests::worker_settings()
    };
    let client = async_nats::connect(stack.nats.url())
        .await
        .expect("connects");
    let db = pinnacle_common::db::connect(&DatabaseSettings {
        database_url: stack.db_url().to_string(),
        database_max_connections: 4,
    })
    .await
    .expect("database");
    let stop = Shutdown::new();
    let paper = PaperBroker::with_ledger(db.clone(), settings.paper_cash);
    paper
        .follow_ticks(client.clone(), stop.clone())
        .await
        .expect("ticks");
    let forwarded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slow_broker = crate::ownership::Slow {
        inner: Arc::new(paper),
        delay: Duration::from_millis(300),
        forwarded: forwarded.clone(),
    };
    let worker = Arc::new(pinnacle_order_worker::Worker::new(
        client,
        db,
        stack.vault.clone(),
        vec![Arc::new(slow_broker)],
        settings,
    ));
    let pressure = Arc::new(Pressure::default());
    let slow = tokio::spawn(pinnacle_order_worker::service::run_observed(
        worker,
        stop.clone(),
        pressure.clone(),
    ));
    // Both workers answer discovery once they serve the queue group.
    eventually(Duration::from_secs(20), "both workers serving", || {
        let client = stack.client.clone();
        async move {
            use futures::StreamExt;
            let inbox = client.new_inbox();
            let mut answers = client.subscribe(inbox.clone()).await.ok()?;
            client
                .publish_with_reply("$SRV.PING.pinnacle-orders", inbox, "".into())
                .await
                .ok()?;
            let mut seen = 0;
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(200), answers.next()).await
            {
                seen += 1;
            }
            (seen >= 2).then_some(())
        }
    })
    .await;

    let total = 120;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stack = Arc::new(stack);
    let trader = Arc::new(trader);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (stack, trader, next) = (stack.clone(), trader.clone(), next.clone());
        callers.spawn(async move {
            let mut replies = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    return replies;
                }
                let order = pinnacle_tests::market(&format!("burst-{n}"), "SBIN-EQ", 1);
                replies.push((n, place_retrying(&stack, &trader, &order).await.0));
            }
        });
    }
    let mut replies = Vec::new();
    while let Some(done) = callers.join_next().await {
        replies.extend(done.expect("caller"));
    }
    assert_eq!(replies.len(), total, "every order answered");
    for (n, reply) in &replies {
        assert_eq!(reply["ok"], true, "burst-{n}: {reply}");
    }
    let db = pinnacle_common::db::connect(&DatabaseSettings {
        database_url: stack.db_url().to_string(),
        database_max_connections: 1,
    })
    .await
    .expect("database");
    let stored = orders::Entity::find()
        .filter(orders::Column::UserId.eq(trader.id.clone()))
        .all(&db)
        .await
        .expect("orders");
    assert_eq!(stored.len(), total, "one order per client order id");
    let by_slow = forwarded.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "slow worker placed {by_slow} of {total}; peak held {}, left {} rejoined {}",
        pressure.peak_held(),
        pressure.left(),
        pressure.rejoined()
    );
    assert!(
        pressure.peak_held() <= capacity.bound(),
        "slow held {}",
        pressure.peak_held()
    );
    assert!(
        by_slow * 4 <= total,
        "the fast worker takes most: slow placed {by_slow}"
    );
    assert!(
        pressure.left() >= 1,
        "the slow worker left the group when full"
    );
    stop.cancel();
    slow.await
        .expect("join")
        .expect("the slow worker stops cleanly");
    assert_eq!(pressure.held(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trader_flooding_a_worker_leaves_room_for_everyone_else() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let stack = Arc::new(pinnacle_tests::TestStack::start(pinnacle_tests::Backend::Sqlite).await);
    let mallory = Arc::new(stack.trader("mallory").await);
    let bob = stack.trader("bob").await;
    stack.wait_for_ticks("SBIN-EQ", 2).await;
    stack.lift_order_rate(&bob.id, 1_000_000).await;

    // Mallory keeps 300 `list` requests in flight, more than the worker's whole bound
    // (128), resending the moment each is answered.
    let flooding = Arc::new(AtomicBool::new(true));
    let (over_share, listed, no_room) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let (stack, mallory, flooding) = (stack.clone(), mallory.clone(), flooding.clone());
        let (over_share, listed, no_room) = (over_share.clone(), listed.clone(), no_room.clone());
        flood.spawn(async move {
            while flooding.load(Ordering::Relaxed) {
                let sent = send_as(&stack, &mallory, "list", bytes::Bytes::new()).await;
                match sent {
                    Ok(reply) => {
                        let code = reply
                            .headers
                            .as_ref()
                            .and_then(|h| h.get("Pinnacle-Error"))
                            .map(|v| v.as_str().to_string());
                        match code.as_deref() {
                            None => listed.fetch_add(1, Ordering::Relaxed),
                            Some("RATE_LIMITED") => over_share.fetch_add(1, Ordering::Relaxed),
                            Some(other) => panic!("mallory's list refused {other}"),
                        };
                    }
                    Err(e) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                        no_room.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => panic!("mallory's list failed: {e}"),
                }
            }
        });
    }
    eventually(
        Duration::from_secs(20),
        "the flood to be refused",
        || async { (over_share.load(Ordering::Relaxed) > 100).then_some(()) },
    )
    .await;

    // Bob's orders meanwhile: each placed, resending on "no responders".
    let mut bob_no_room = 0;
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let order = pinnacle_tests::market(&format!("bob-{n}"), "SBIN-EQ", 1);
        let started = std::time::Instant::now();
        let (reply, no_room) = place_retrying(&stack, &bob, &order).await;
        bob_no_room += no_room;
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply["ok"], true, "bob-{n}: {reply}");
        assert_eq!(reply["result"]["status"], "FILLED", "bob-{n}: {reply}");
    }
    flooding.store(false, Ordering::Relaxed);
    while let Some(done) = flood.join_next().await {
        done.expect("flooder");
    }
    let (over_share, listed, no_room) = (
        over_share.load(Ordering::Relaxed),
        listed.load(Ordering::Relaxed),
        no_room.load(Ordering::Relaxed),
    );
    eprintln!(
        "mallory: {listed} listed, {over_share} RATE_LIMITED, {no_room} no responders; \
         bob: 20 placed, {bob_no_room} no responders, slowest {slowest:?}"
    );
    assert!(listed > 0, "mallory is served too, up to her share");
    // Without the share: 78–86 for 20 orders, mallory holding the whole bound; with it
    // 9–19 (2026-12-07): her flood can still use up the worker's grant for a moment.
    assert!(
        bob_no_room <= 40,
        "bob found no room {bob_no_room} times for 20 orders"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "bob's slowest order took {slowest:?}"
    );
}
