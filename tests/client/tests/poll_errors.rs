//! An error inside `pgmq.read_with_poll` is an ordinary error: the session goes on, in
//! autocommit and inside a PL/pgSQL EXCEPTION block (issue: an internal subtransaction was left
//! open, so the next statement failed, ROLLBACK killed the backend, and later autocommit
//! statements never committed).

use std::thread;
use std::time::Duration;

use pgflow_client_tests::*;

/// What makes the read fail.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// The queue does not exist.
    MissingQueue,
    /// `qty < 0`.
    NegativeQty,
    /// A trigger on the queue table raises.
    TableTrigger,
    /// A statement timeout lands during the read.
    StatementTimeout,
    /// Another session drops the queue while the read waits.
    DroppedWhilePolling,
}

const TRIGGERS: [Trigger; 5] = [
    Trigger::MissingQueue,
    Trigger::NegativeQty,
    Trigger::TableTrigger,
    Trigger::StatementTimeout,
    Trigger::DroppedWhilePolling,
];

struct Case {
    queue: String,
    qty: i32,
    expected: &'static str,
    session_setup: Option<&'static str>,
}

fn prepare(setup: &mut Client, trigger: Trigger) -> Case {
    let queue = unique_name("perr");
    let mut case = Case { queue: queue.clone(), qty: 1, expected: "", session_setup: None };
    match trigger {
        Trigger::MissingQueue => case.expected = "42P01",
        Trigger::NegativeQty => {
            create_queue(setup, &queue);
            send(setup, &queue, "{}");
            case.qty = -1;
            case.expected = "2201W";
        }
        Trigger::TableTrigger | Trigger::StatementTimeout => {
            create_queue(setup, &queue);
            send(setup, &queue, "{}");
            let body = if matches!(trigger, Trigger::TableTrigger) {
                "RAISE EXCEPTION 'refused by trigger'"
            } else {
                "PERFORM pg_sleep(2)"
            };
            setup
                .batch_execute(&format!(
                    "CREATE FUNCTION public.t_{queue}() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN {body}; RETURN NEW; END$$;
                     CREATE TRIGGER t BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION public.t_{queue}();",
                    table = queue_table(&queue)
                ))
                .expect("trigger");
            if matches!(trigger, Trigger::TableTrigger) {
                case.expected = "P0001";
            } else {
                case.expected = "57014";
                case.session_setup = Some("SET statement_timeout = '300ms'");
            }
        }
        Trigger::DroppedWhilePolling => {
            create_queue(setup, &queue);
            case.expected = "42P01";
        }
    }
    case
}

fn read_call(case: &Case) -> String {
    format!(
        "pgmq.read_with_poll('{}', 30, {}, max_poll_seconds => 5, poll_interval_ms => 50)",
        case.queue, case.qty
    )
}

/// For the dropped-queue case: drops the queue once `pid` waits in the read.
fn drop_while_waiting(trigger: Trigger, queue: &str, pid: i32, needle: &'static str) -> Option<thread::JoinHandle<()>> {
    if !matches!(trigger, Trigger::DroppedWhilePolling) {
        return None;
    }
    let queue = queue.to_string();
    Some(thread::spawn(move || {
        let mut other = connect();
        wait_until_active(&mut other, pid, needle, Duration::from_secs(5));
        thread::sleep(Duration::from_millis(200));
        other.execute("SELECT pgmq.drop_queue($1::text)", &[&queue]).expect("drop_queue");
    }))
}

fn marker_table(client: &mut Client) -> String {
    let table = format!("public.{}", unique_name("perr_marks"));
    client.batch_execute(&format!("CREATE TABLE {table} (mark text)")).expect("marker table");
    table
}

fn marks(observer: &mut Client, table: &str) -> Vec<String> {
    observer
        .query(&format!("SELECT mark FROM {table} ORDER BY mark") as &str, &[])
        .expect("marks")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The session state another connection sees (idle, idle in transaction, ...).
fn state_of(observer: &mut Client, pid: i32) -> Option<String> {
    observer
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .expect("pg_stat_activity")
        .get(0)
}

fn cleanup(client: &mut Client, trigger: Trigger, queue: &str) {
    if matches!(trigger, Trigger::TableTrigger | Trigger::StatementTimeout) {
        client.execute("SELECT pgmq.drop_queue($1::text)", &[&queue]).ok();
        client.batch_execute(&format!("DROP FUNCTION IF EXISTS public.t_{queue}()")).ok();
    }
}

/// The connections of one case: one that sets up, one that observes from outside, and the
/// session under test (with its backend pid), plus the case and a marker table.
struct Connections {
    setup: Client,
    observer: Client,
    case: Case,
    table: String,
    session: Client,
    pid: i32,
}

fn connections(trigger: Trigger) -> Connections {
    let mut setup = connect();
    let observer = connect();
    let case = prepare(&mut setup, trigger);
    let table = marker_table(&mut setup);
    let mut session = connect();
    let pid = backend_pid(&mut session);
    if let Some(sql) = case.session_setup {
        session.batch_execute(sql).unwrap();
    }
    Connections { setup, observer, case, table, session, pid }
}

#[test]
fn an_error_in_read_with_poll_leaves_an_autocommit_session_usable() {
    for trigger in TRIGGERS {
        let Connections { mut setup, mut observer, case, table, mut session, pid } = connections(trigger);

        let dropper = drop_while_waiting(trigger, &case.queue, pid, "read_with_poll");
        let err = session
            .simple_query(&format!("SELECT * FROM {}", read_call(&case)))
            .expect_err("the read fails");
        if let Some(handle) = dropper {
            handle.join().unwrap();
        }
        assert_eq!(sqlstate(&err), Some(case.expected), "{trigger:?}: {err}");
        if let Some(sql) = case.session_setup {
            session.batch_execute(&sql.replace("'300ms'", "0")).unwrap_or_else(|e| panic!("{trigger:?}: {e}"));
        }

        let one: i32 = session
            .query_one("SELECT 1", &[])
            .unwrap_or_else(|e| panic!("{trigger:?}: the next statement fails: {e}"))
            .get(0);
        assert_eq!(one, 1);
        session
            .batch_execute("BEGIN; SELECT 1; ROLLBACK;")
            .unwrap_or_else(|e| panic!("{trigger:?}: BEGIN/ROLLBACK fails: {e}"));
        session
            .batch_execute("ROLLBACK")
            .unwrap_or_else(|e| panic!("{trigger:?}: a ROLLBACK outside a transaction fails: {e}"));
        session
            .execute(&format!("INSERT INTO {table} VALUES ('after')") as &str, &[])
            .unwrap_or_else(|e| panic!("{trigger:?}: {e}"));
        assert_eq!(marks(&mut observer, &table), ["after"], "{trigger:?}: an autocommit insert is committed");
        assert_eq!(state_of(&mut observer, pid).as_deref(), Some("idle"), "{trigger:?}");
        assert!(backend_alive(&mut observer, pid), "{trigger:?}: the backend is alive");

        drop(session);
        cleanup(&mut setup, trigger, &case.queue);
    }
}

#[test]
fn an_error_in_read_with_poll_is_caught_by_an_exception_block_like_any_other() {
    for trigger in TRIGGERS {
        let Connections { mut setup, mut observer, case, table, mut session, pid } = connections(trigger);

        session
            .batch_execute(&format!(
                "CREATE FUNCTION pg_temp.caught() RETURNS text LANGUAGE plpgsql AS $f$
                 DECLARE state text;
                 BEGIN
                     INSERT INTO {table} VALUES ('before');
                     BEGIN
                         INSERT INTO {table} VALUES ('inside');
                         PERFORM * FROM {call};
                     EXCEPTION WHEN others OR query_canceled THEN
                         GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE;
                         INSERT INTO {table} VALUES ('caught');
                         RETURN state;
                     END;
                     RETURN 'no error';
                 END $f$;",
                call = read_call(&case)
            ))
            .expect("define caught()");

        let dropper = drop_while_waiting(trigger, &case.queue, pid, "caught()");
        let caught: String = session
            .query_one("SELECT pg_temp.caught()", &[])
            .unwrap_or_else(|e| panic!("{trigger:?}: the block does not catch the error: {e}"))
            .get(0);
        if let Some(handle) = dropper {
            handle.join().unwrap();
        }
        assert_eq!(caught, case.expected, "{trigger:?}");
        if let Some(sql) = case.session_setup {
            session.batch_execute(&sql.replace("'300ms'", "0")).unwrap();
        }
        assert_eq!(
            marks(&mut observer, &table),
            ["before", "caught"],
            "{trigger:?}: the block's own work is rolled back, the rest is committed"
        );

        session
            .execute(&format!("INSERT INTO {table} VALUES ('later')") as &str, &[])
            .unwrap_or_else(|e| panic!("{trigger:?}: {e}"));
        assert_eq!(
            marks(&mut observer, &table),
            ["before", "caught", "later"],
            "{trigger:?}: later autocommit statements commit"
        );
        assert_eq!(state_of(&mut observer, pid).as_deref(), Some("idle"), "{trigger:?}: not left in a transaction");

        drop(session);
        cleanup(&mut setup, trigger, &case.queue);
    }
}
