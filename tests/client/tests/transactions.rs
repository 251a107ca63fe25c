//! Transactional behaviour of the queue: visibility of uncommitted work, rollback of reads,
//! SKIP LOCKED claiming and msg id allocation.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pgflow_client_tests::*;

/// A second connection that errors out instead of waiting on a lock for long.
fn impatient() -> Client {
    let mut c = connect();
    c.batch_execute("SET statement_timeout = '3s'; SET lock_timeout = '2s'")
        .unwrap();
    c
}

#[test]
fn uncommitted_sends_are_invisible_to_other_connections() {
    let mut a = connect();
    let mut b = impatient();
    let queue = unique_name("tx_invis");
    create_queue(&mut a, &queue);
    let table = queue_table(&queue);

    let mut tx = a.transaction().unwrap();
    let mut ids: Vec<i64> = vec![
        tx.query_one(
            "SELECT * FROM pgmq.send($1::text, '{\"k\": 1}'::jsonb)",
            &[&queue],
        )
        .unwrap()
        .get(0),
    ];
    ids.extend(
        tx.query("SELECT * FROM pgmq.send_batch($1::text, ARRAY['{\"k\": 2}'::jsonb, '{\"k\": 3}'::jsonb])", &[&queue])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i64>(0)),
    );
    // The sending transaction sees its own messages.
    let own: i64 = tx
        .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
        .unwrap()
        .get(0);
    assert_eq!(own, 3);

    assert!(
        read(&mut b, &queue, 30, 10).is_empty(),
        "uncommitted messages were read by another connection"
    );
    let popped = query_msgs(&mut b, "pgmq.pop($1::text, 10)", &[&queue]).unwrap();
    assert!(
        popped.is_empty(),
        "uncommitted messages were popped: {popped:?}"
    );
    let grouped = query_msgs(&mut b, "pgmq.read_grouped($1::text, 30, 10)", &[&queue]).unwrap();
    assert!(
        grouped.is_empty(),
        "uncommitted messages were read_grouped: {grouped:?}"
    );
    assert_eq!(count_rows(&mut b, &table), 0);
    let m = b
        .query_one(
            "SELECT queue_length, queue_visible_length FROM pgmq.metrics($1::text)",
            &[&queue],
        )
        .unwrap();
    assert_eq!(
        (m.get::<_, i64>(0), m.get::<_, i64>(1)),
        (0, 0),
        "metrics counted uncommitted messages"
    );
    // A poll of the other connection does not see them either.
    let polled = query_msgs(
        &mut b,
        "pgmq.read_with_poll($1::text, 30, 10, 1, 100)",
        &[&queue],
    )
    .unwrap();
    assert!(
        polled.is_empty(),
        "read_with_poll returned uncommitted messages: {polled:?}"
    );

    tx.commit().unwrap();
    let got: BTreeSet<i64> = read(&mut b, &queue, 30, 10)
        .iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(
        got,
        ids.iter().copied().collect::<BTreeSet<_>>(),
        "committed messages not all readable"
    );
}

#[test]
fn read_in_rolled_back_transaction_leaves_message_unchanged() {
    let mut a = connect();
    let queue = unique_name("tx_rbread");
    create_queue(&mut a, &queue);
    let id = send_with_headers(&mut a, &queue, r#"{"x": 1}"#, r#"{"x-pgmq-group": "g"}"#);
    let before = queue_row(&mut a, &queue, id).unwrap();
    assert_eq!((before.read_ct, before.last_read_at), (0, None));

    let readers = [
        "pgmq.read($1::text, 60, 1)",
        "pgmq.read_with_poll($1::text, 60, 1, 2, 100)",
        "pgmq.read_grouped($1::text, 60, 1)",
        "pgmq.read_grouped_rr($1::text, 60, 1)",
        "pgmq.read_grouped_head($1::text, 60, 1)",
        "pgmq.read_grouped_with_poll($1::text, 60, 1, 2, 100)",
    ];
    for reader in readers {
        let mut tx = a.transaction().unwrap();
        let got = query_msgs(&mut tx, reader, &[&queue]).unwrap();
        assert_eq!(got.len(), 1, "{reader}: {got:?}");
        assert_eq!(got[0].msg_id, id);
        assert_eq!(
            got[0].read_ct, 1,
            "{reader}: read_ct inside the transaction"
        );
        assert!(
            got[0].last_read_at.is_some(),
            "{reader}: last_read_at inside the transaction"
        );
        let lease = ts_diff(got[0].vt, got[0].last_read_at.unwrap()).expect("vt before read time");
        assert!(
            lease >= Duration::from_secs(60) && lease < Duration::from_secs(61),
            "{reader}: lease {lease:?}"
        );
        tx.rollback().unwrap();
        let after = queue_row(&mut a, &queue, id).expect("message vanished");
        assert_eq!(
            after, before,
            "{reader}: rolled-back read changed the message"
        );
    }

    // Still immediately readable, as a first read.
    let mut b = connect();
    let got = read(&mut b, &queue, 30, 1);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].msg_id, got[0].read_ct), (id, 1));
}

#[test]
fn message_locked_by_open_reading_transaction_is_skipped() {
    let mut a = connect();
    let mut b = impatient();
    let queue = unique_name("tx_skip");
    create_queue(&mut a, &queue);
    let ids = send_batch_n(&mut a, &queue, 3);

    // A reads the lowest id with vt 0: committed, that would leave it visible at once, so only
    // A's row lock can keep it from B.
    let mut tx = a.transaction().unwrap();
    let got = query_msgs(&mut tx, "pgmq.read($1::text, 0, 1)", &[&queue]).unwrap();
    assert_eq!(
        got.iter().map(|m| m.msg_id).collect::<Vec<_>>(),
        vec![ids[0]],
        "read claimed not the lowest id"
    );

    let start = Instant::now();
    let got: BTreeSet<i64> = read(&mut b, &queue, 30, 10)
        .iter()
        .map(|m| m.msg_id)
        .collect();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "read waited {:?} on a locked row",
        start.elapsed()
    );
    assert_eq!(
        got,
        BTreeSet::from([ids[1], ids[2]]),
        "read did not skip exactly the locked message"
    );

    let start = Instant::now();
    let popped = query_msgs(&mut b, "pgmq.pop($1::text, 10)", &[&queue]).unwrap();
    assert!(
        popped.is_empty(),
        "pop took {popped:?} (locked or invisible)"
    );
    let polled = query_msgs(
        &mut b,
        "pgmq.read_with_poll($1::text, 30, 10, 1, 100)",
        &[&queue],
    )
    .unwrap();
    assert!(polled.is_empty(), "read_with_poll took {polled:?}");
    assert!(
        start.elapsed() < Duration::from_millis(1_500),
        "pop/poll waited on the locked row"
    );

    tx.rollback().unwrap();
    let got = read(&mut b, &queue, 30, 10);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].msg_id, got[0].read_ct),
        (ids[0], 1),
        "after rollback the message is read as new"
    );
}

#[test]
fn msg_ids_are_never_reused_after_purge_rollback_delete_or_archive() {
    let mut a = connect();
    let queue = unique_name("tx_ids");
    create_queue(&mut a, &queue);

    let ids = send_batch_n(&mut a, &queue, 3);
    assert_eq!(
        ids,
        vec![ids[0], ids[0] + 1, ids[0] + 2],
        "batch ids not consecutive"
    );
    let purged: i64 = a
        .query_one("SELECT pgmq.purge_queue($1::text)", &[&queue])
        .unwrap()
        .get(0);
    assert_eq!(purged, 3);
    assert_eq!(count_rows(&mut a, &queue_table(&queue)), 0);
    let next = send(&mut a, &queue, "{}");
    assert_eq!(next, ids[2] + 1, "id after purge");

    let mut tx = a.transaction().unwrap();
    let rolled: i64 = tx
        .query_one("SELECT * FROM pgmq.send($1::text, '{}'::jsonb)", &[&queue])
        .unwrap()
        .get(0);
    assert_eq!(rolled, next + 1);
    let batch: Vec<i64> = tx
        .query(
            "SELECT * FROM pgmq.send_batch($1::text, ARRAY['{}'::jsonb, '{}', '{}', '{}'])",
            &[&queue],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(batch, (rolled + 1..=rolled + 4).collect::<Vec<_>>());
    tx.rollback().unwrap();
    let after_rollback = send(&mut a, &queue, "{}");
    assert_eq!(after_rollback, rolled + 5, "id after rolled-back sends");

    // Removing the newest message does not hand its id out again.
    let deleted: bool = a
        .query_one(
            "SELECT pgmq.delete($1::text, $2::bigint)",
            &[&queue, &after_rollback],
        )
        .unwrap()
        .get(0);
    assert!(deleted);
    let after_delete = send(&mut a, &queue, "{}");
    assert_eq!(after_delete, after_rollback + 1);
    let archived: bool = a
        .query_one(
            "SELECT pgmq.archive($1::text, $2::bigint)",
            &[&queue, &after_delete],
        )
        .unwrap()
        .get(0);
    assert!(archived);
    let after_archive = send(&mut a, &queue, "{}");
    assert_eq!(after_archive, after_delete + 1);

    let purged: i64 = a
        .query_one("SELECT pgmq.purge_queue($1::text)", &[&queue])
        .unwrap()
        .get(0);
    assert_eq!(purged, 2, "purge count (next and after_archive)");
    let total: i64 = a
        .query_one(
            "SELECT total_messages FROM pgmq.metrics($1::text)",
            &[&queue],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        total, after_archive,
        "metrics.total_messages = every id ever issued"
    );
    let last = send(&mut a, &queue, "{}");
    assert_eq!(last, after_archive + 1);
}
