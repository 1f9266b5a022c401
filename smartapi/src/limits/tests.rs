//! Tests of the rate limiter: queuing, refusal, shared windows and the store fallback.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_burst_of_orders_is_queued_to_nine_per_second() {
    let limiter = RateLimiter::new(Duration::from_secs(5));
    let start = Instant::now();
    for _ in 0..18 {
        limiter.acquire("C1", Bucket::Orders).await.expect("queued");
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    // Another client code has its own budget.
    let other = Instant::now();
    limiter
        .acquire("C2", Bucket::Orders)
        .await
        .expect("own budget");
    assert_eq!(other.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_flood_is_refused_clearly() {
    let limiter = RateLimiter::new(Duration::from_millis(500));
    for _ in 0..3 {
        limiter
            .acquire("C1", Bucket::Candles)
            .await
            .expect("within limit");
    }
    let error = limiter
        .acquire("C1", Bucket::Candles)
        .await
        .expect_err("over limit");
    assert_eq!(error.kind(), crate::SmartApiErrorKind::RateLimited);
    assert!(error.to_string().contains("Candles"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn the_minute_window_holds_too() {
    let limiter = RateLimiter::new(Duration::from_secs(120));
    let start = Instant::now();
    for _ in 0..181 {
        limiter
            .acquire("C1", Bucket::Candles)
            .await
            .expect("queued");
    }
    // 180 per minute: the 181st waits for the first to leave the minute window.
    assert!(
        start.elapsed() >= Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

/// Every (client code, bucket)'s send times.
type Logs = HashMap<Key, Vec<u64>>;

/// Windows shared by several limiters ("processes"), in memory, for these tests.
#[derive(Debug, Default)]
struct MemoryWindows {
    logs: Mutex<Logs>,
    epoch: std::sync::OnceLock<Instant>,
    broken: AtomicBool,
}

#[async_trait::async_trait]
impl SharedWindows for MemoryWindows {
    async fn take_stamped(
        &self,
        client_code: &str,
        bucket: Bucket,
    ) -> Result<Result<u64, Duration>, shared::RateStoreError> {
        let (now, mut logs) = self.open()?;
        let log = logs.entry((client_code.to_string(), bucket)).or_default();
        Ok(match window::admit(log, now, bucket.limit()) {
            None => Ok(*log.last().expect("stamped")),
            Some(wait) => Err(Duration::from_millis(wait)),
        })
    }

    async fn restamp(
        &self,
        client_code: &str,
        bucket: Bucket,
        from: u64,
    ) -> Result<Option<u64>, shared::RateStoreError> {
        let (now, mut logs) = self.open()?;
        let log = logs.entry((client_code.to_string(), bucket)).or_default();
        Ok(window::restamp(log, from, now, bucket.limit()))
    }
}

impl MemoryWindows {
    fn open(&self) -> Result<(u64, std::sync::MutexGuard<'_, Logs>), shared::RateStoreError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(shared::RateStoreError::Unavailable("broken".into()));
        }
        let now = self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64;
        Ok((now, self.logs.lock().expect("lock")))
    }
}

#[tokio::test(start_paused = true)]
async fn limiters_sharing_windows_share_one_budget() {
    let windows = Arc::new(MemoryWindows::default());
    let workers: Vec<Arc<RateLimiter>> = (0..3)
        .map(|_| RateLimiter::with_shared(Duration::from_secs(10), windows.clone()))
        .collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..27 {
        let worker = workers[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            worker.acquire("C1", Bucket::Orders).await.expect("queued");
            start.elapsed()
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await.expect("task"));
    }
    sent.sort();
    // Nine per 1.05 s across all three, not nine each.
    for (i, at) in sent.iter().enumerate() {
        assert_eq!(at.as_millis() / 1_050, (i / 9) as u128, "{sent:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn requests_queue_in_arrival_order_and_other_accounts_do_not_wait() {
    let limiter = RateLimiter::new(Duration::from_secs(5));
    for _ in 0..9 {
        limiter.acquire("C1", Bucket::Orders).await.expect("free");
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (limiter, order) = (limiter.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            limiter.acquire("C1", Bucket::Orders).await.expect("queued");
            order.lock().expect("lock").push(i);
        }));
        // Arrive one after the other.
        tokio::task::yield_now().await;
    }
    // C1 is queued; C2's orders and C1's order book are not behind it.
    let other = Instant::now();
    limiter
        .acquire("C2", Bucket::Orders)
        .await
        .expect("own budget");
    limiter
        .acquire("C1", Bucket::OrderBook)
        .await
        .expect("own bucket");
    assert_eq!(other.elapsed(), Duration::ZERO);
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(*order.lock().expect("lock"), vec![0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_says_when_the_window_opens() {
    let limiter = RateLimiter::new(Duration::from_millis(300));
    limiter.acquire("C1", Bucket::Login).await.expect("free");
    let error = limiter
        .acquire("C1", Bucket::Login)
        .await
        .expect_err("full");
    let after = error.retry_after().expect("ours");
    assert!(
        after > Duration::from_millis(900) && after <= Duration::from_millis(1_050),
        "{after:?}"
    );
    assert!(error.to_string().contains("window opens in"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_broken_store_falls_back_to_this_process_windows() {
    let windows = Arc::new(MemoryWindows::default());
    windows.broken.store(true, Ordering::Relaxed);
    let limiter = RateLimiter::with_shared(Duration::from_millis(100), windows.clone());
    limiter.acquire("C1", Bucket::Login).await.expect("local");
    let error = limiter
        .acquire("C1", Bucket::Login)
        .await
        .expect_err("the local window is full");
    assert_eq!(error.kind(), crate::SmartApiErrorKind::RateLimited);
    // Sends counted while the store worked stay counted locally.
    windows.broken.store(false, Ordering::Relaxed);
    tokio::time::advance(Duration::from_secs(2)).await;
    limiter.acquire("C1", Bucket::Login).await.expect("shared");
    windows.broken.store(true, Ordering::Relaxed);
    limiter
        .acquire("C1", Bucket::Login)
        .await
        .expect_err("the shared send is in the local log");
}

#[tokio::test(start_paused = true)]
async fn a_reserved_slot_counts_now_and_a_stale_one_moves_to_its_send() {
    let limiter = RateLimiter::new(Duration::from_millis(500));
    for _ in 0..8 {
        limiter.acquire("C1", Bucket::Orders).await.expect("free");
    }
    let slot = limiter
        .reserve("C1", Bucket::Orders)
        .await
        .expect("the ninth");
    assert!(slot.is_for("C1", Bucket::Orders) && slot.is_fresh());
    assert!(!slot.is_for("C2", Bucket::Orders), "another client code's");
    assert!(!slot.is_for("C1", Bucket::Login), "another bucket's");
    // The reservation was counted: the window is full until it opens, so a tenth request
    // is refused, not sent beside the reserved one.
    let refused = limiter
        .acquire("C1", Bucket::Orders)
        .await
        .expect_err("the window holds the reserved send");
    assert_eq!(refused.kind(), crate::SmartApiErrorKind::RateLimited);
    // A slot held past its freshness has its send moved to when it goes: at once, with
    // no wait, and without letting a tenth send into the window.
    tokio::time::advance(Duration::from_millis(600)).await;
    assert!(!slot.is_fresh());
    let started = Instant::now();
    limiter.renew(slot).await.expect("moved");
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Still nine in the window: the next request waits for the first eight to leave it.
    let next = Instant::now();
    limiter.acquire("C1", Bucket::Orders).await.expect("queued");
    assert_eq!(
        next.elapsed().as_millis(),
        u128::from(window::SECOND_MS) - 600
    );
}

#[tokio::test(start_paused = true)]
async fn a_slot_a_second_old_queues_again_and_is_refused_when_no_window_opens() {
    // A stored wait of 500 ms: the window opens a second later.
    let limiter = RateLimiter::new(Duration::from_millis(50));
    let slot = limiter.reserve("C1", Bucket::Orders).await.expect("free");
    tokio::time::advance(Duration::from_millis(1_020)).await;
    for _ in 0..9 {
        limiter.acquire("C1", Bucket::Orders).await.expect("free");
    }
    // A second old: its stamp cannot move; counted afresh, it waits for the window,
    // which opens too late.
    let refused = limiter
        .renew(slot)
        .await
        .expect_err("the window is full for a second");
    assert_eq!(refused.kind(), crate::SmartApiErrorKind::RateLimited);
    assert!(refused.retry_after().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_stale_slot_moves_in_the_shared_windows() {
    let windows = Arc::new(MemoryWindows::default());
    let a = RateLimiter::with_shared(Duration::from_millis(300), windows.clone());
    let b = RateLimiter::with_shared(Duration::from_millis(300), windows.clone());
    let slot = a.reserve("C1", Bucket::Orders).await.expect("free");
    for _ in 0..8 {
        b.acquire("C1", Bucket::Orders).await.expect("free");
    }
    tokio::time::advance(Duration::from_millis(500)).await;
    a.renew(slot).await.expect("moved, not counted again");
    let log = windows.logs.lock().expect("lock")[&("C1".to_string(), Bucket::Orders)].clone();
    assert_eq!(log.len(), 9, "{log:?}");
    assert!(log.last().is_some_and(|t| *t >= 500), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stored_order_sent_again_waits_for_its_turn_where_a_new_one_is_refused() {
    let limiter = RateLimiter::new(Duration::from_millis(200));
    assert_eq!(limiter.stored_wait(), Duration::from_secs(2));
    for _ in 0..9 {
        limiter.acquire("C1", Bucket::Orders).await.expect("free");
    }
    let refused = limiter
        .reserve("C1", Bucket::Orders)
        .await
        .expect_err("a new order does not wait a second");
    assert!(refused.to_string().contains("window opens in"), "{refused}");
    let started = Instant::now();
    let slot = limiter
        .reserve_stored("C1", Bucket::Orders)
        .await
        .expect("a stored order waits for the window");
    assert!(slot.is_for("C1", Bucket::Orders));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}
