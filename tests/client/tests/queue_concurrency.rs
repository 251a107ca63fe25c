//! Many consumers on one queue: every message is delivered exactly once while its visibility
//! timeout lasts, and nothing is lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use pgflow_client_tests::*;

const TOTAL: i32 = 10_000;
const CONSUMERS: usize = 8;
const BATCH: i32 = 50;

#[derive(Clone, Copy, Debug)]
enum Reader {
    Read,
    ReadWithPoll,
}

/// What one consumer saw: every delivered row, in delivery order.
struct ConsumerLog {
    delivered: Vec<Msg>,
    batches: usize,
}

/// TOTAL messages, CONSUMERS consumers started together, each reading batches with a 30 s
/// visibility timeout and archiving what it read, until the queue is drained.
fn drain_with_archiving_consumers(prefix: &str, reader: Reader) {
    let mut admin = connect();
    let queue = unique_name(prefix);
    create_queue(&mut admin, &queue);
    let sent = send_batch_n(&mut admin, &queue, TOTAL);
    assert_eq!(sent.len(), TOTAL as usize);
    let sent_set: HashSet<i64> = sent.iter().copied().collect();
    assert_eq!(
        sent_set.len(),
        TOTAL as usize,
        "send_batch returned duplicate ids"
    );
    assert!(
        sent.windows(2).all(|w| w[0] < w[1]),
        "send_batch ids not ascending in input order"
    );

    let barrier = Arc::new(Barrier::new(CONSUMERS));
    let handles: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let queue = queue.clone();
            thread::spawn(move || {
                let mut client = connect();
                let mut log = ConsumerLog {
                    delivered: Vec::new(),
                    batches: 0,
                };
                barrier.wait();
                loop {
                    let batch = match reader {
                        Reader::Read => read(&mut client, &queue, 30, BATCH),
                        Reader::ReadWithPoll => query_msgs(
                            &mut client,
                            "pgmq.read_with_poll(queue_name => $1::text, vt => 30, qty => $2::int,
                                                 max_poll_seconds => 1, poll_interval_ms => 50)",
                            &[&queue, &BATCH],
                        )
                        .expect("read_with_poll"),
                    };
                    if batch.is_empty() {
                        break;
                    }
                    assert!(batch.len() <= BATCH as usize, "read returned more than qty");
                    let ids: Vec<i64> = batch.iter().map(|m| m.msg_id).collect();
                    let mut archived: Vec<i64> = client
                        .query(
                            "SELECT * FROM pgmq.archive($1::text, $2::bigint[])",
                            &[&queue, &ids],
                        )
                        .expect("archive")
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    archived.sort_unstable();
                    let mut expected = ids.clone();
                    expected.sort_unstable();
                    assert_eq!(
                        archived, expected,
                        "archive did not move exactly the ids just read"
                    );
                    log.batches += 1;
                    log.delivered.extend(batch);
                }
                log
            })
        })
        .collect();
    let logs: Vec<ConsumerLog> = handles
        .into_iter()
        .map(|h| h.join().expect("consumer panicked"))
        .collect();

    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut duplicates = Vec::new();
    for (consumer, log) in logs.iter().enumerate() {
        for m in &log.delivered {
            if let Some(other) = seen.insert(m.msg_id, consumer) {
                duplicates.push((m.msg_id, other, consumer));
            }
            assert_eq!(
                m.read_ct, 1,
                "message {} delivered with read_ct {}",
                m.msg_id, m.read_ct
            );
            assert!(
                m.last_read_at.is_some(),
                "message {} has no last_read_at",
                m.msg_id
            );
            assert_eq!(
                m.message.as_deref().map(|s| s.starts_with("{\"n\": ")),
                Some(true)
            );
        }
    }
    assert!(
        duplicates.is_empty(),
        "ids delivered twice (id, consumer, consumer): {:?}",
        &duplicates[..duplicates.len().min(20)]
    );
    let delivered: HashSet<i64> = seen.keys().copied().collect();
    let missing: Vec<_> = sent_set.difference(&delivered).take(20).collect();
    let foreign: Vec<_> = delivered.difference(&sent_set).take(20).collect();
    assert!(
        missing.is_empty() && foreign.is_empty(),
        "missing {missing:?}, unexpected {foreign:?}"
    );
    assert_eq!(delivered.len(), TOTAL as usize);
    let busy = logs.iter().filter(|l| l.batches > 0).count();
    assert!(
        busy >= CONSUMERS / 2,
        "only {busy} of {CONSUMERS} consumers got messages: no real concurrency"
    );

    assert_eq!(
        count_rows(&mut admin, &queue_table(&queue)),
        0,
        "queue not empty at the end"
    );
    let archive = archive_table(&queue);
    let row = admin
        .query_one(
            format!(
                "SELECT count(*), count(DISTINCT msg_id), min(msg_id), max(msg_id),
                        count(*) FILTER (WHERE read_ct <> 1 OR last_read_at IS NULL)
                 FROM {archive}"
            )
            .as_str(),
            &[],
        )
        .unwrap();
    let (n, distinct, min, max, bad): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(
        (n, distinct),
        (TOTAL as i64, TOTAL as i64),
        "archive row count"
    );
    assert_eq!(
        (min, max),
        (sent[0], sent[TOTAL as usize - 1]),
        "archive id range"
    );
    assert_eq!(bad, 0, "archived rows with read_ct <> 1 or no last_read_at");
    let metrics = admin
        .query_one(
            "SELECT queue_length, total_messages FROM pgmq.metrics($1::text)",
            &[&queue],
        )
        .unwrap();
    assert_eq!(metrics.get::<_, i64>(0), 0);
    assert_eq!(metrics.get::<_, i64>(1), sent[TOTAL as usize - 1]);
}

#[test]
fn read_consumers_archiving_deliver_each_message_exactly_once() {
    drain_with_archiving_consumers("cc_read", Reader::Read);
}

#[test]
fn read_with_poll_consumers_archiving_deliver_each_message_exactly_once() {
    drain_with_archiving_consumers("cc_poll", Reader::ReadWithPoll);
}

/// One delivery as seen by a consumer.
#[derive(Debug, Clone)]
struct Delivery {
    consumer: usize,
    read_ct: i32,
    read_at: SystemTime,
    vt: SystemTime,
    received: Instant,
}

/// Consumers that never acknowledge and use a 1 s visibility timeout: messages come back again
/// and again, but an id may only be handed out again once the previous delivery's vt has passed.
#[test]
fn short_vt_without_ack_never_hands_an_id_to_two_consumers_within_vt() {
    const MESSAGES: i32 = 2_000;
    const VT: i32 = 1;
    const RUN: Duration = Duration::from_millis(3_500);

    let mut admin = connect();
    let queue = unique_name("cc_vt");
    create_queue(&mut admin, &queue);
    let sent = send_batch_n(&mut admin, &queue, MESSAGES);
    let sent_set: HashSet<i64> = sent.iter().copied().collect();

    let barrier = Arc::new(Barrier::new(CONSUMERS));
    let handles: Vec<_> = (0..CONSUMERS)
        .map(|consumer| {
            let barrier = Arc::clone(&barrier);
            let queue = queue.clone();
            thread::spawn(move || {
                let mut client = connect();
                let mut out: Vec<(i64, Delivery)> = Vec::new();
                barrier.wait();
                let start = Instant::now();
                while start.elapsed() < RUN {
                    let batch = read(&mut client, &queue, VT, 100);
                    let received = Instant::now();
                    if batch.is_empty() {
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    for m in batch {
                        let read_at = m.last_read_at.expect("read row without last_read_at");
                        out.push((
                            m.msg_id,
                            Delivery {
                                consumer,
                                read_ct: m.read_ct,
                                read_at,
                                vt: m.vt,
                                received,
                            },
                        ));
                    }
                }
                out
            })
        })
        .collect();
    let mut per_id: BTreeMap<i64, Vec<Delivery>> = BTreeMap::new();
    let mut deliveries = 0usize;
    for h in handles {
        for (id, d) in h.join().expect("consumer panicked") {
            per_id.entry(id).or_default().push(d);
            deliveries += 1;
        }
    }

    assert!(
        per_id.keys().all(|id| sent_set.contains(id)),
        "delivered an id that was never sent"
    );
    assert_eq!(
        per_id.len(),
        MESSAGES as usize,
        "not every message was delivered at least once"
    );
    // Each message should have come back a few times; otherwise the test proved nothing.
    assert!(
        deliveries >= 2 * MESSAGES as usize,
        "only {deliveries} deliveries of {MESSAGES} messages: vt expiry was never exercised"
    );

    let final_read_ct: HashMap<i64, i32> = admin
        .query(
            format!("SELECT msg_id, read_ct FROM {}", queue_table(&queue)).as_str(),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        final_read_ct.len(),
        MESSAGES as usize,
        "messages disappeared from the queue"
    );

    let mut violations = Vec::new();
    let mut redelivered_elsewhere = 0usize;
    for (id, ds) in per_id.iter_mut() {
        ds.sort_by_key(|d| d.read_at);
        // read_ct numbers the deliveries 1, 2, 3, ... without gaps or repeats: two consumers
        // getting the same delivery would show up as a repeated read_ct.
        let cts: Vec<i32> = ds.iter().map(|d| d.read_ct).collect();
        let expected: Vec<i32> = (1..=ds.len() as i32).collect();
        if cts != expected {
            violations.push(format!("id {id}: read_ct sequence {cts:?}"));
            continue;
        }
        assert_eq!(
            final_read_ct[id],
            ds.len() as i32,
            "id {id}: read_ct in table differs from deliveries seen"
        );
        for d in ds.iter() {
            let lease = ts_diff(d.vt, d.read_at)
                .unwrap_or_else(|e| panic!("id {id}: vt {e:?} before read time"));
            assert!(
                lease >= Duration::from_secs(VT as u64)
                    && lease < Duration::from_secs(VT as u64) + Duration::from_millis(100),
                "id {id}: vt - last_read_at = {lease:?}, expected about {VT} s"
            );
        }
        for w in ds.windows(2) {
            // Server clock: the next delivery may only happen once the previous vt has passed.
            if let Err(early) = ts_diff(w[1].read_at, w[0].vt) {
                violations.push(format!(
                    "id {id}: consumer {} read it {early:?} before the vt of consumer {}'s delivery expired",
                    w[1].consumer, w[0].consumer
                ));
            }
            // Client clock: the two deliveries were received at least about one vt apart.
            let gap = w[1].received.saturating_duration_since(w[0].received);
            if gap + Duration::from_millis(400) < Duration::from_secs(VT as u64) {
                violations.push(format!(
                    "id {id}: received again only {gap:?} after the previous delivery"
                ));
            }
            if w[0].consumer != w[1].consumer {
                redelivered_elsewhere += 1;
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    assert!(
        redelivered_elsewhere > 0,
        "no message ever moved to another consumer"
    );
}
