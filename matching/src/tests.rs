use super::*;
use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;

fn key(name: &str) -> TaskQueueKey {
    TaskQueueKey::new("ns", name, TaskKind::Workflow)
}

fn in_ms(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

/// Far enough that a poll returning is never its deadline, only what the test did.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Yields until `n` pollers wait on `k`: a poller is recorded and queued in one step.
async fn pollers_waiting<T: Send + 'static>(m: &Matcher<T>, k: &TaskQueueKey, n: usize) {
    while m.describe(k).pollers.len() < n {
        tokio::task::yield_now().await;
    }
}

/// Polls `fut` exactly once (so a poller registers), then abandons the select.
async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) {
    tokio::select! {
        biased;
        _ = fut => panic!("poll completed unexpectedly"),
        _ = std::future::ready(()) => {}
    }
}

#[tokio::test]
async fn sync_match_to_waiting_poller() {
    let m = Matcher::new();
    let k = key("q");
    let m2 = m.clone();
    let k2 = k.clone();
    let h = tokio::spawn(async move { m2.poll(&k2, "w1", in_ms(5_000)).await });
    // Wait until the poller is registered.
    pollers_waiting(&m, &k, 1).await;
    m.add(&k, 7u32);
    assert_eq!(h.await.unwrap(), Some(7));
    assert_eq!(m.describe(&k).backlog, 0);
}

#[tokio::test]
async fn sync_match_goes_to_longest_waiting_poller() {
    let m = Matcher::new();
    let k = key("q");
    let mut first = Box::pin(m.poll(&k, "first", in_ms(5_000)));
    let mut second = Box::pin(m.poll(&k, "second", in_ms(5_000)));
    poll_once(&mut first).await;
    poll_once(&mut second).await;
    m.add(&k, 1u32);
    m.add(&k, 2u32);
    assert_eq!(first.await, Some(1));
    assert_eq!(second.await, Some(2));
}

#[tokio::test]
async fn fifo_backlog() {
    let m = Matcher::new();
    let k = key("q");
    for i in 0..5u32 {
        m.add(&k, i);
    }
    assert_eq!(m.describe(&k).backlog, 5);
    for i in 0..5u32 {
        assert_eq!(m.poll(&k, "w", in_ms(100)).await, Some(i));
    }
    assert_eq!(m.describe(&k).backlog, 0);
}

#[tokio::test]
async fn queues_are_independent() {
    let m = Matcher::new();
    let wf = key("q");
    let act = TaskQueueKey::new("ns", "q", TaskKind::Activity);
    m.add(&act, 1u32);
    assert_eq!(m.poll(&wf, "w", in_ms(20)).await, None);
    assert_eq!(m.poll(&act, "w", in_ms(20)).await, Some(1));
}

#[tokio::test]
async fn poll_returns_none_at_deadline() {
    let m = Matcher::<u32>::new();
    let k = key("q");
    let start = std::time::Instant::now();
    assert_eq!(m.poll(&k, "w", in_ms(50)).await, None);
    assert!(start.elapsed() >= Duration::from_millis(45));
    // The expired poller is no longer a waiter: a new task goes to the backlog.
    m.add(&k, 1);
    assert_eq!(m.describe(&k).backlog, 1);
    // A deadline already in the past still returns a backlog task.
    assert_eq!(m.poll(&k, "w", Instant::now()).await, Some(1));
    assert_eq!(m.poll(&k, "w", Instant::now()).await, None);
}

#[tokio::test]
async fn dropped_poll_loses_no_task() {
    let m = Matcher::new();
    let k = key("q");
    // Abandon a long poll via an outer timeout.
    let r =
        tokio::time::timeout(Duration::from_millis(20), m.poll(&k, "gone", in_ms(10_000))).await;
    assert!(r.is_err());
    // The task must not go to the departed poller.
    m.add(&k, 42u32);
    assert_eq!(m.describe(&k).backlog, 1);
    assert_eq!(m.poll(&k, "later", in_ms(100)).await, Some(42));
}

#[tokio::test]
async fn task_sent_to_abandoned_poll_returns_to_front() {
    let m = Matcher::new();
    let k = key("q");
    let mut fut = Box::pin(m.poll(&k, "gone", in_ms(10_000)));
    poll_once(&mut fut).await; // registered as waiter
    m.add(&k, 1u32); // sync-matched to `fut`
    m.add(&k, 2u32); // no waiter left: backlog
    assert_eq!(m.describe(&k).backlog, 1);
    drop(fut); // client went away before receiving task 1
    assert_eq!(m.describe(&k).backlog, 2);
    assert_eq!(m.poll(&k, "w", in_ms(100)).await, Some(1));
    assert_eq!(m.poll(&k, "w", in_ms(100)).await, Some(2));
}

#[tokio::test]
async fn task_from_abandoned_poll_goes_to_other_waiter() {
    let m = Matcher::new();
    let k = key("q");
    let mut gone = Box::pin(m.poll(&k, "gone", in_ms(10_000)));
    poll_once(&mut gone).await;
    m.add(&k, 9u32); // matched to `gone`
    let mut other = Box::pin(m.poll(&k, "other", in_ms(10_000)));
    poll_once(&mut other).await;
    drop(gone);
    assert_eq!(other.await, Some(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pollers_each_task_delivered_once() {
    const TASKS: usize = 2_000;
    const POLLERS: usize = 16;
    let m = Matcher::new();
    let k = key("q");
    let delivered = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();

    let mut pollers = Vec::new();
    for p in 0..POLLERS {
        let (m, k, delivered, tx) = (m.clone(), k.clone(), delivered.clone(), tx.clone());
        pollers.push(tokio::spawn(async move {
            let identity = format!("w{p}");
            let mut round = 0u64;
            while delivered.load(Ordering::SeqCst) < TASKS {
                round += 1;
                let got = if (p as u64 + round).is_multiple_of(3) {
                    // Sometimes abandon the poll from outside to exercise the drop path.
                    let outer = Duration::from_micros(50 + (round % 7) * 100);
                    tokio::time::timeout(outer, m.poll(&k, &identity, in_ms(50)))
                        .await
                        .ok()
                        .flatten()
                } else {
                    m.poll(&k, &identity, in_ms(5)).await
                };
                if let Some(t) = got {
                    delivered.fetch_add(1, Ordering::SeqCst);
                    tx.send(t).unwrap();
                }
            }
        }));
    }
    drop(tx);

    let mut adders = Vec::new();
    for a in 0..4usize {
        let (m, k) = (m.clone(), k.clone());
        adders.push(tokio::spawn(async move {
            for i in (a..TASKS).step_by(4) {
                m.add(&k, i);
                if i.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for a in adders {
        a.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        for p in pollers {
            p.await.unwrap();
        }
    })
    .await
    .expect("all tasks delivered");

    let mut seen = HashSet::new();
    while let Some(t) = rx.recv().await {
        assert!(seen.insert(t), "task {t} delivered twice");
    }
    assert_eq!(seen.len(), TASKS);
    assert_eq!(m.describe(&k).backlog, 0);
}

#[tokio::test]
async fn requeue_front_order() {
    let m = Matcher::new();
    let k = key("q");
    m.add(&k, 2u32);
    m.add(&k, 3u32);
    m.requeue_front(&k, 1);
    let mut got = Vec::new();
    while let Some(t) = m.poll(&k, "w", Instant::now()).await {
        got.push(t);
    }
    assert_eq!(got, vec![1, 2, 3]);
}

#[tokio::test]
async fn requeue_front_goes_to_waiting_poller() {
    let m = Matcher::new();
    let k = key("q");
    let mut fut = Box::pin(m.poll(&k, "w", in_ms(5_000)));
    poll_once(&mut fut).await;
    m.requeue_front(&k, 5u32);
    assert_eq!(fut.await, Some(5));
}

#[tokio::test]
async fn retain_drops_stale_tasks() {
    let m = Matcher::new();
    let k = key("q");
    for i in 0..6u32 {
        m.add(&k, i);
    }
    m.retain(&k, |t| t % 2 == 0);
    assert_eq!(m.describe(&k).backlog, 3);
    let mut got = Vec::new();
    while let Some(t) = m.poll(&k, "w", Instant::now()).await {
        got.push(t);
    }
    assert_eq!(got, vec![0, 2, 4]);
    m.retain(&key("unknown"), |_| false); // no-op
}

#[tokio::test]
async fn unload_wakes_pollers_and_returns_backlog() {
    let m = Matcher::new();
    let k = key("sticky");
    let other = key("normal");
    m.add(&other, 100u32);

    let mut handles = Vec::new();
    for i in 0..3 {
        let (m, k) = (m.clone(), k.clone());
        handles.push(tokio::spawn(async move {
            m.poll(&k, &format!("w{i}"), never()).await
        }));
    }
    pollers_waiting(&m, &k, 3).await;
    assert!(m.has_recent_poller(&k, Duration::from_secs(10)));
    assert!(m.unload(&k).is_empty());
    for h in handles {
        let r = tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("poller woken by unload")
            .unwrap();
        assert_eq!(r, None);
    }
    assert!(!m.has_recent_poller(&k, Duration::from_secs(10)));
    assert!(m.describe(&k).pollers.is_empty());

    m.add(&k, 1);
    m.add(&k, 2);
    assert_eq!(m.unload(&k), vec![1, 2]);
    assert_eq!(m.describe(&k).backlog, 0);
    // Other queues are untouched.
    assert_eq!(m.describe(&other).backlog, 1);
}

#[tokio::test]
async fn unloading_queues_wakes_their_pollers_and_hands_back_their_tasks() {
    let m = Matcher::new();
    let k = key("q");
    m.add(&key("other"), 1u32);
    m.add(&key("kept"), 2u32);
    let m2 = m.clone();
    let k2 = k.clone();
    let h = tokio::spawn(async move { m2.poll_served(&k2, "w", never(), || true).await });
    pollers_waiting(&m, &k, 1).await;
    let unloaded = m.unload_where(|queue| *queue != key("kept"));
    assert_eq!(unloaded, vec![(key("other"), vec![1])]);
    let r = tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, Polled::NotServed);
    assert_eq!(m.describe(&key("other")).backlog, 0);
    assert_eq!(m.describe(&key("kept")).backlog, 1);
    assert!(!m.has_recent_poller(&k, Duration::from_secs(10)));
}

#[tokio::test]
async fn has_recent_poller_window() {
    let m = Matcher::<u32>::new();
    let k = key("sticky");
    assert!(!m.has_recent_poller(&k, Duration::from_secs(10)));

    // Currently polling counts, even with a zero window.
    let mut fut = Box::pin(m.poll(&k, "w", in_ms(5_000)));
    poll_once(&mut fut).await;
    assert!(m.has_recent_poller(&k, Duration::ZERO));
    drop(fut);

    assert!(m.has_recent_poller(&k, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!m.has_recent_poller(&k, Duration::from_millis(30)));
    assert!(m.has_recent_poller(&k, Duration::from_secs(10)));
}

#[tokio::test]
async fn describe_lists_identities_newest_first() {
    let m = Matcher::<u32>::new();
    let k = key("q");
    assert_eq!(m.describe(&k), QueueDescription::default());
    assert_eq!(m.poll(&k, "alice", Instant::now()).await, None);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(m.poll(&k, "bob", Instant::now()).await, None);
    tokio::time::sleep(Duration::from_millis(5)).await;
    m.add(&k, 1);
    m.add(&k, 2);
    let d = m.describe(&k);
    let ids: Vec<_> = d.pollers.iter().map(|p| p.identity.as_str()).collect();
    assert_eq!(ids, vec!["bob", "alice"]);
    assert_eq!(d.backlog, 2);
    assert!(d.pollers[0].last_access_time >= d.pollers[1].last_access_time);

    // Polling again moves alice to the front; identities are not duplicated.
    assert_eq!(m.poll(&k, "alice", in_ms(10)).await, Some(1));
    let d = m.describe(&k);
    let ids: Vec<_> = d.pollers.iter().map(|p| p.identity.as_str()).collect();
    assert_eq!(ids, vec!["alice", "bob"]);
    assert_eq!(d.backlog, 1);
}

#[test]
fn matcher_is_send_sync_clone() {
    fn assert_traits<X: Send + Sync + Clone + 'static>() {}
    assert_traits::<Matcher<String>>();
    fn assert_key<X: Clone + Eq + std::hash::Hash + Ord + std::fmt::Debug>() {}
    assert_key::<TaskQueueKey>();
}

#[tokio::test]
async fn poll_future_is_send() {
    fn assert_send<F: std::future::Future + Send>(_: F) {}
    let m = Matcher::<String>::new();
    let k = key("q");
    assert_send(m.poll(&k, "w", Instant::now()));
}

#[tokio::test]
async fn offer_hands_to_a_waiting_poller_or_gives_the_task_back() {
    let m = Matcher::new();
    let k = key("q");
    // No queue, then a queue without waiters: the task comes back and nothing is queued.
    assert_eq!(m.offer(&k, 1u32), Err(1));
    m.add(&k, 0u32);
    assert_eq!(m.poll(&k, "w", in_ms(0)).await, Some(0));
    assert_eq!(m.offer(&k, 1u32), Err(1));
    assert_eq!(m.describe(&k).backlog, 0);

    let mut waiting = Box::pin(m.poll(&k, "w", in_ms(5_000)));
    poll_once(&mut waiting).await;
    assert_eq!(m.offer(&k, 2u32), Ok(()));
    assert_eq!(waiting.await, Some(2));
    assert_eq!(m.describe(&k).backlog, 0);
}

#[tokio::test]
async fn a_queue_not_served_here_is_not_polled_and_keeps_no_poller() {
    let m = Matcher::new();
    let k = key("q");
    m.add(&k, 1u32);
    assert_eq!(
        m.poll_served(&k, "w", never(), || false).await,
        Polled::NotServed
    );
    // Neither the task nor the poller record was touched.
    assert_eq!(m.describe(&k).backlog, 1);
    assert!(m.describe(&k).pollers.is_empty());
    assert_eq!(
        m.poll_served(&k, "w", never(), || true).await,
        Polled::Task(1)
    );
    assert_eq!(
        m.poll_served(&k, "w", in_ms(10), || true).await,
        Polled::Deadline
    );
}
