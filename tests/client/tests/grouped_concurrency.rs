//! FIFO groups under concurrency: while one consumer holds messages of a group no other
//! consumer gets any message of that group, and each group is processed in msg_id order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pgflow_client_tests::*;

const CONSUMERS: usize = 4;
const NAMED_GROUPS: usize = 6;
const MESSAGES: usize = 700;
const QTY: i32 = 3;
const DEFAULT_GROUP: &str = "_default_fifo_group";

#[derive(Clone, Copy, Debug)]
enum Strategy {
    Grouped,
    RoundRobin,
}

impl Strategy {
    fn call(self) -> &'static str {
        match self {
            Strategy::Grouped => "pgmq.read_grouped($1::text, 30, $2::int)",
            Strategy::RoundRobin => "pgmq.read_grouped_rr($1::text, 30, $2::int)",
        }
    }
}

#[derive(Default)]
struct Shared {
    /// group -> consumer currently holding (processing) messages of it
    holder: HashMap<String, usize>,
    /// group -> msg ids in the order they were handed to processing
    order: BTreeMap<String, Vec<i64>>,
    violations: Vec<String>,
}

fn group_of(m: &Msg) -> String {
    m.headers
        .as_deref()
        .and_then(|h| h.split("\"x-pgmq-group\": \"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
        .unwrap_or_else(|| DEFAULT_GROUP.to_string())
}

fn run(strategy: Strategy, prefix: &str) {
    let mut admin = connect();
    let queue = unique_name(prefix);
    create_queue(&mut admin, &queue);

    // Group names unique to this queue (rr's advisory locks are keyed on the group text only).
    let groups: Vec<String> = (0..NAMED_GROUPS).map(|g| format!("{queue}-g{g}")).collect();
    let mut rng = Rng::new(0x5eed ^ prefix.len() as u64);
    let mut msgs = Vec::with_capacity(MESSAGES);
    let mut headers: Vec<Option<String>> = Vec::with_capacity(MESSAGES);
    let mut expected_group = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        msgs.push(format!("{{\"i\": {i}}}"));
        let pick = rng.below(NAMED_GROUPS as u64 + 1) as usize;
        if pick == NAMED_GROUPS {
            // Ungrouped: NULL headers or headers without the key both mean the default group.
            headers.push(if i % 2 == 0 {
                None
            } else {
                Some(r#"{"other": "x"}"#.to_string())
            });
            expected_group.push(DEFAULT_GROUP.to_string());
        } else {
            headers.push(Some(format!("{{\"x-pgmq-group\": \"{}\"}}", groups[pick])));
            expected_group.push(groups[pick].clone());
        }
    }
    let ids: Vec<i64> = admin
        .query(
            "SELECT * FROM pgmq.send_batch($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[])",
            &[&queue, &msgs, &headers],
        )
        .expect("send_batch")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), MESSAGES);
    let mut expected_order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (id, g) in ids.iter().zip(&expected_group) {
        expected_order.entry(g.clone()).or_default().push(*id);
    }
    let expected_group_of: HashMap<i64, String> = ids
        .iter()
        .copied()
        .zip(expected_group.iter().cloned())
        .collect();

    let shared = Arc::new(Mutex::new(Shared::default()));
    let processed = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(CONSUMERS));
    let deadline = Instant::now() + Duration::from_secs(60);
    let handles: Vec<_> = (0..CONSUMERS)
        .map(|me| {
            let (shared, processed, barrier) = (Arc::clone(&shared), Arc::clone(&processed), Arc::clone(&barrier));
            let queue = queue.clone();
            let expected_group_of = expected_group_of.clone();
            thread::spawn(move || {
                let mut client = connect();
                let mut batches = 0usize;
                barrier.wait();
                while processed.load(Ordering::SeqCst) < MESSAGES && Instant::now() < deadline {
                    let mut batch = query_msgs(&mut client, strategy.call(), &[&queue, &QTY]).expect("grouped read");
                    if batch.is_empty() {
                        thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    assert!(batch.len() <= QTY as usize);
                    if let Strategy::Grouped = strategy {
                        // read_grouped's result order is unspecified; rr's is the selection order.
                        batch.sort_by_key(|m| m.msg_id);
                    }
                    let batch_groups: Vec<String> = batch.iter().map(group_of).collect();
                    {
                        let mut s = shared.lock().unwrap();
                        for (m, g) in batch.iter().zip(&batch_groups) {
                            assert_eq!(m.read_ct, 1, "message {} read again", m.msg_id);
                            assert_eq!(&expected_group_of[&m.msg_id], g, "group of message {}", m.msg_id);
                            if let Some(&other) = s.holder.get(g)
                                && other != me
                            {
                                let v = format!("consumer {me} got {} of group {g} while consumer {other} holds that group", m.msg_id);
                                s.violations.push(v);
                            }
                            s.holder.insert(g.clone(), me);
                            s.order.entry(g.clone()).or_default().push(m.msg_id);
                        }
                    }
                    // "Processing": keep the group for a moment.
                    thread::sleep(Duration::from_millis(1));
                    {
                        // Release before acknowledging: until the archive commits, the group's
                        // messages are still in flight and nobody may get the group.
                        let mut s = shared.lock().unwrap();
                        for g in &batch_groups {
                            if s.holder.get(g) == Some(&me) {
                                s.holder.remove(g);
                            }
                        }
                    }
                    let ids: Vec<i64> = batch.iter().map(|m| m.msg_id).collect();
                    let archived = client
                        .query("SELECT * FROM pgmq.archive($1::text, $2::bigint[])", &[&queue, &ids])
                        .expect("archive");
                    assert_eq!(archived.len(), ids.len(), "archive moved fewer rows than were read");
                    processed.fetch_add(ids.len(), Ordering::SeqCst);
                    batches += 1;
                }
                batches
            })
        })
        .collect();
    let batches: Vec<usize> = handles
        .into_iter()
        .map(|h| h.join().expect("consumer panicked"))
        .collect();
    let shared = shared.lock().unwrap();

    assert!(
        shared.violations.is_empty(),
        "{} group exclusivity violations, first: {:?}",
        shared.violations.len(),
        &shared.violations[..shared.violations.len().min(10)]
    );
    assert_eq!(
        processed.load(Ordering::SeqCst),
        MESSAGES,
        "not all messages processed within 60 s"
    );
    for (g, want) in &expected_order {
        let got = shared.order.get(g).cloned().unwrap_or_default();
        if &got != want {
            let first_bad = got.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "group {g}: processing order differs from msg_id order at position {first_bad:?}: got {got:?}, want {want:?}"
            );
        }
    }
    assert_eq!(
        shared.order.len(),
        expected_order.len(),
        "unexpected groups: {:?}",
        shared.order.keys()
    );
    assert!(
        batches.iter().filter(|&&b| b > 0).count() >= 2,
        "only one consumer did any work: {batches:?}"
    );
    assert_eq!(
        count_rows(&mut admin, &queue_table(&queue)),
        0,
        "queue not empty"
    );
    assert_eq!(
        count_rows(&mut admin, &archive_table(&queue)),
        MESSAGES as i64,
        "archive row count"
    );
}

#[test]
fn read_grouped_consumers_never_share_a_group_and_keep_fifo_order() {
    run(Strategy::Grouped, "gc_grouped");
}

#[test]
fn read_grouped_rr_consumers_never_share_a_group_and_keep_fifo_order() {
    run(Strategy::RoundRobin, "gc_rr");
}

/// A targeted version of the race the concurrent rr test can hit: consumer A has claimed the
/// first messages of group G (its transaction holds G) and commits while consumer B's
/// read_grouped_rr statement is already running. B must still not get any message of G: G's
/// head is in flight from the moment A commits. Filler messages (invisible, other groups) make
/// B's statement long enough that A's commit lands inside it.
#[test]
fn read_grouped_rr_does_not_hand_out_group_claimed_by_transaction_committing_mid_statement() {
    let mut a = connect();
    let mut observer = connect();
    let queue = unique_name("gc_rrrace");
    create_queue(&mut a, &queue);
    let table = queue_table(&queue);
    let group = format!("{queue}-G");
    let g_ids: Vec<i64> = a
        .query(
            "SELECT * FROM pgmq.send_batch($1::text,
                 ARRAY(SELECT jsonb_build_object('i', g) FROM generate_series(1, 10) g),
                 ARRAY(SELECT jsonb_build_object('x-pgmq-group', $2::text) FROM generate_series(1, 10)))",
            &[&queue, &group],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    a.batch_execute(&format!(
        "INSERT INTO {table} (vt, message, headers)
         SELECT clock_timestamp() + interval '1 hour', '{{}}', jsonb_build_object('x-pgmq-group', 'filler' || (g % 500))
         FROM generate_series(1, 300000) g;
         ANALYZE {table};"
    ))
    .unwrap();

    let mut b = connect();
    let b_pid = backend_pid(&mut b);
    let mut b = Some(b);
    let mut violations = Vec::new();
    for delay_ms in [30u64, 80, 130] {
        a.execute(
            format!("UPDATE {table} SET vt = clock_timestamp(), read_ct = 0, last_read_at = NULL WHERE msg_id = ANY($1)").as_str(),
            &[&g_ids],
        )
        .unwrap();
        let mut tx = a.transaction().unwrap();
        let got: Vec<i64> = query_msgs(&mut tx, "pgmq.read_grouped_rr($1::text, 30, 3)", &[&queue])
            .unwrap()
            .iter()
            .map(|m| m.msg_id)
            .collect();
        assert_eq!(got, g_ids[..3].to_vec(), "A's read");

        let mut client = b.take().unwrap();
        let q = queue.clone();
        let handle = thread::spawn(move || {
            let got = query_msgs(&mut client, "pgmq.read_grouped_rr($1::text, 30, 6)", &[&q])
                .expect("B's read");
            (got, client)
        });
        wait_until_active(
            &mut observer,
            b_pid,
            "read_grouped_rr",
            Duration::from_secs(5),
        );
        thread::sleep(Duration::from_millis(delay_ms));
        tx.commit().unwrap();
        let (got, client) = handle.join().expect("B panicked");
        b = Some(client);
        let got: Vec<i64> = got.iter().map(|m| m.msg_id).collect();
        if !got.is_empty() {
            violations.push(format!(
                "commit {delay_ms} ms into B's statement: B got {got:?} while A holds {:?}",
                &g_ids[..3]
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "group handed to two consumers: {violations:?}"
    );
}
