//! Insert notifications: `pgmq.enable_notify_insert` + `LISTEN "pgmq.q_<name>.INSERT"`.

use std::thread;
use std::time::{Duration, Instant, SystemTime};

use pgflow_client_tests::*;
use postgres::Notification;
use postgres::fallible_iterator::FallibleIterator;

/// How long the listener waits for (further) notifications before concluding there are none.
const QUIET: Duration = Duration::from_millis(700);

fn channel(queue: &str) -> String {
    format!("pgmq.q_{queue}.INSERT")
}

fn listen(client: &mut Client, channel: &str) {
    client
        .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
        .expect("LISTEN");
}

/// Every notification that arrives until none has arrived for `quiet`.
fn collect(client: &mut Client, quiet: Duration) -> Vec<Notification> {
    let mut out = Vec::new();
    let mut notifications = client.notifications();
    let mut iter = notifications.timeout_iter(quiet);
    while let Some(n) = iter.next().expect("notification stream") {
        out.push(n);
    }
    out
}

/// Creates a queue with insert notifications (given throttle) and a listener on its channel.
/// Returns (sender, listener, queue).
fn setup(prefix_or_name: &str, throttle_ms: i32) -> (Client, Client, String) {
    let mut sender = connect();
    let queue = unique_name(prefix_or_name);
    create_queue(&mut sender, &queue);
    sender
        .execute(
            "SELECT pgmq.enable_notify_insert($1::text, $2::int)",
            &[&queue, &throttle_ms],
        )
        .expect("enable_notify_insert");
    let mut listener = connect();
    listen(&mut listener, &channel(&queue));
    (sender, listener, queue)
}

fn assert_one_notification(got: &[Notification], queue: &str, sender_pid: i32, what: &str) {
    assert_eq!(
        got.len(),
        1,
        "{what}: expected exactly one notification, got {got:?}"
    );
    assert_eq!(got[0].channel(), channel(queue), "{what}: channel");
    assert_eq!(got[0].payload(), "", "{what}: payload");
    assert_eq!(got[0].process_id(), sender_pid, "{what}: notifying backend");
}

fn throttle_state(client: &mut Client, queue: &str) -> (i32, SystemTime) {
    let row = client
        .query_one(
            "SELECT throttle_interval_ms, last_notified_at FROM pgmq.list_notify_insert_throttles()
             WHERE queue_name = $1::text",
            &[&queue],
        )
        .expect("throttle row");
    (row.get(0), row.get(1))
}

#[test]
fn committed_send_notifies_exactly_once_with_empty_payload() {
    let (mut sender, mut listener, queue) = setup("nt_commit", 0);
    let pid = backend_pid(&mut sender);
    assert!(
        collect(&mut listener, Duration::from_millis(200)).is_empty(),
        "notification before any send"
    );

    send(&mut sender, &queue, r#"{"a": 1}"#);
    let got = collect(&mut listener, QUIET);
    assert_one_notification(&got, &queue, pid, "one committed send");

    // Throttle 0: every committed inserting transaction notifies.
    send(&mut sender, &queue, r#"{"a": 2}"#);
    send(&mut sender, &queue, r#"{"a": 3}"#);
    let got = collect(&mut listener, QUIET);
    assert_eq!(got.len(), 2, "two committed sends: {got:?}");
    assert!(
        got.iter()
            .all(|n| n.channel() == channel(&queue) && n.payload().is_empty())
    );
}

#[test]
fn rolled_back_send_notifies_nothing() {
    // A long throttle window: if the rolled-back send had consumed it, the later committed send
    // would stay silent.
    let (mut sender, mut listener, queue) = setup("nt_rollback", 60_000);
    let pid = backend_pid(&mut sender);
    let (_, epoch_state) = throttle_state(&mut sender, &queue);

    let mut tx = sender.transaction().unwrap();
    tx.query("SELECT pgmq.send($1::text, '{}'::jsonb)", &[&queue])
        .unwrap();
    tx.query(
        "SELECT pgmq.send_batch($1::text, ARRAY['{}'::jsonb, '{}'::jsonb])",
        &[&queue],
    )
    .unwrap();
    let during = collect(&mut listener, Duration::from_millis(300));
    assert!(during.is_empty(), "notification before commit: {during:?}");
    tx.rollback().unwrap();
    let got = collect(&mut listener, QUIET);
    assert!(got.is_empty(), "rolled-back send notified: {got:?}");
    assert_eq!(
        throttle_state(&mut sender, &queue).1,
        epoch_state,
        "rollback kept last_notified_at"
    );

    send(&mut sender, &queue, "{}");
    assert_one_notification(
        &collect(&mut listener, QUIET),
        &queue,
        pid,
        "committed send after rollback",
    );
    // ...and the window is now really closed.
    send(&mut sender, &queue, "{}");
    let got = collect(&mut listener, QUIET);
    assert!(
        got.is_empty(),
        "send inside a 60 s throttle window notified: {got:?}"
    );
}

#[test]
fn transaction_with_many_inserts_notifies_once() {
    let (mut sender, mut listener, queue) = setup("nt_many", 0);
    let pid = backend_pid(&mut sender);

    let mut tx = sender.transaction().unwrap();
    tx.query(
        "SELECT pgmq.send_batch($1::text, ARRAY(SELECT jsonb_build_object('i', g) FROM generate_series(1, 100) g))",
        &[&queue],
    )
    .unwrap();
    for i in 0..10 {
        tx.query(
            "SELECT pgmq.send($1::text, jsonb_build_object('single', $2::int))",
            &[&queue, &i],
        )
        .unwrap();
    }
    // A direct insert fires the trigger as well.
    tx.execute(
        format!(
            "INSERT INTO {} (vt, message) VALUES (clock_timestamp(), '{{}}')",
            queue_table(&queue)
        )
        .as_str(),
        &[],
    )
    .unwrap();
    let during = collect(&mut listener, Duration::from_millis(300));
    assert!(during.is_empty(), "notification before commit: {during:?}");
    tx.commit().unwrap();
    assert_one_notification(
        &collect(&mut listener, QUIET),
        &queue,
        pid,
        "transaction with 111 inserts",
    );
    assert_eq!(count_rows(&mut sender, &queue_table(&queue)), 111);

    let mut tx = sender.transaction().unwrap();
    for _ in 0..5 {
        tx.query("SELECT pgmq.send($1::text, '{}'::jsonb)", &[&queue])
            .unwrap();
    }
    tx.commit().unwrap();
    assert_one_notification(
        &collect(&mut listener, QUIET),
        &queue,
        pid,
        "second transaction with 5 sends",
    );
}

#[test]
fn throttle_interval_suppresses_notifications_inside_the_window() {
    const WINDOW_MS: i32 = 3_000;
    let (mut sender, mut listener, queue) = setup("nt_throttle", 0);
    let pid = backend_pid(&mut sender);
    // Default interval is 250 ms; re-enabling replaces the setting.
    sender
        .execute("SELECT pgmq.enable_notify_insert($1::text)", &[&queue])
        .unwrap();
    assert_eq!(throttle_state(&mut sender, &queue).0, 250);
    sender
        .execute(
            "SELECT pgmq.enable_notify_insert($1::text, $2::int)",
            &[&queue, &WINDOW_MS],
        )
        .unwrap();
    assert_eq!(throttle_state(&mut sender, &queue).0, WINDOW_MS);

    let first = Instant::now();
    send(&mut sender, &queue, "{}");
    assert_one_notification(
        &collect(&mut listener, QUIET),
        &queue,
        pid,
        "first send (window open)",
    );
    let (_, notified_at) = throttle_state(&mut sender, &queue);

    for _ in 0..3 {
        send(&mut sender, &queue, "{}");
    }
    let got = collect(&mut listener, Duration::from_millis(500));
    assert!(
        first.elapsed() < Duration::from_millis(WINDOW_MS as u64),
        "test too slow to stay inside the window"
    );
    assert!(
        got.is_empty(),
        "sends inside the throttle window notified: {got:?}"
    );
    assert_eq!(
        throttle_state(&mut sender, &queue).1,
        notified_at,
        "suppressed sends moved last_notified_at"
    );

    // After the window: the next send notifies again (and nothing trails for the suppressed ones).
    let wait = Duration::from_millis(WINDOW_MS as u64 + 200).saturating_sub(first.elapsed());
    thread::sleep(wait);
    assert!(
        collect(&mut listener, Duration::from_millis(50)).is_empty(),
        "trailing notification"
    );
    send(&mut sender, &queue, "{}");
    assert_one_notification(
        &collect(&mut listener, QUIET),
        &queue,
        pid,
        "send after the window",
    );

    // update_notify_insert resets the window: the next send notifies, the one after does not.
    sender
        .execute(
            "SELECT pgmq.update_notify_insert($1::text, 60000)",
            &[&queue],
        )
        .unwrap();
    send(&mut sender, &queue, "{}");
    assert_one_notification(
        &collect(&mut listener, QUIET),
        &queue,
        pid,
        "send after update_notify_insert",
    );
    send(&mut sender, &queue, "{}");
    let got = collect(&mut listener, QUIET);
    assert!(
        got.is_empty(),
        "send inside the new 60 s window notified: {got:?}"
    );
}

#[test]
fn mixed_case_queue_notifies_on_channel_with_original_spelling() {
    let (mut sender, mut listener, queue) = setup("MyQueue", 0);
    assert!(queue.starts_with("MyQueue_"));
    let pid = backend_pid(&mut sender);
    let lower = channel(&queue.to_lowercase());
    assert_ne!(lower, channel(&queue));
    listen(&mut listener, &lower);

    send(&mut sender, &queue, "{}");
    let got = collect(&mut listener, QUIET);
    assert_one_notification(&got, &queue, pid, "mixed-case queue");
    assert_eq!(got[0].channel(), format!("pgmq.q_{queue}.INSERT"));
}
