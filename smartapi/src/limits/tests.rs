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

/// Windows shared by several limiters ("processes"), in memory, for these tests.
#[derive(Debug, Default)]
struct MemoryWindows {
    logs: Mutex<HashMap<Key, Vec<u64>>>,
    epoch: std::sync::OnceLock<Instant>,
    broken: AtomicBool,
}

#[async_trait::async_trait]
impl SharedWindows for MemoryWindows {
    async fn take(
        &self,
        client_code: &str,
        bucket: Bucket,
    ) -> Result<Option<Duration>, shared::RateStoreError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(shared::RateStoreError::Unavailable("broken".into()));
        }
        let now = self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64;
        let mut logs = self.logs.lock().expect("lock");
        let log = logs.entry((client_code.to_string(), bucket)).or_default();
        Ok(window::admit(log, now, bucket.limit()).map(Duration::from_millis))
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
