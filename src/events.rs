//! Run and step events: where they go. Their payloads are built in `run::events`.
//!
//! An event goes to `realtime.send(payload, event, topic, false)` when that function exists at
//! call time (it may be created after the extension) and is trusted: the function and its schema
//! are owned by a superuser or by the extension's owner. Otherwise it goes to `pg_notify` when
//! `pgflow.notify_events` is on, or is dropped. A function anybody else owns would run with the
//! caller's rights (a superuser's, for the background worker). The lookup happens once and is
//! remembered until pg_proc, pg_namespace or pg_authid change (invalidation callbacks forget
//! it): no catalog query per task.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU32, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::datum::Jsonb;
use crate::guc;
use crate::statement::Statement;

// The trusted realtime.send, by its exact signature (types qualified, so that the caller's
// search_path can't pick them): it and its schema belong to a superuser or the extension's owner.
static TRUSTED_REALTIME_SEND: Statement = Statement::new(
    "WITH trusted AS (
         SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolsuper
         UNION ALL
         SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pgflow_core'
     )
     SELECT p.oid FROM pg_catalog.pg_proc p
     JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
     WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(
               'realtime.send(pg_catalog.jsonb,pg_catalog.text,pg_catalog.text,pg_catalog.bool)')
       AND p.proowner OPERATOR(pg_catalog.=) ANY (SELECT oid FROM trusted)
       AND n.nspowner OPERATOR(pg_catalog.=) ANY (SELECT oid FROM trusted)",
    &[],
);
/// pg_notify refuses payloads of 8000 bytes or more.
const NOTIFY_PAYLOAD_LIMIT: usize = 7999;

static REALTIME_SEND_CALL: Statement = Statement::new(
    "SELECT realtime.send($1::pg_catalog.jsonb, $2::pg_catalog.text, $3::pg_catalog.text, false)",
    &[pg_sys::JSONBOID, pg_sys::TEXTOID, pg_sys::TEXTOID],
);

/// realtime.send's oid: `UNKNOWN` until looked up, `InvalidOid` when it does not exist.
/// Reset by an invalidation callback whenever any function is created, changed or dropped, so
/// the lookup happens once and is always current.
static REALTIME: AtomicU32 = AtomicU32::new(UNKNOWN);
const UNKNOWN: u32 = u32::MAX;

/// Registers the invalidation callback (once per process, from `_PG_init`).
pub fn init() {
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            Some(forget_realtime_send),
            pg_sys::Datum::from(0),
        );
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(forget_realtime_send),
            pg_sys::Datum::from(0),
        );
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::AUTHOID as i32,
            Some(forget_realtime_send),
            pg_sys::Datum::from(0),
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_realtime_send(_arg: pg_sys::Datum, _cache_id: i32, _hash: u32) {
    REALTIME.store(UNKNOWN, Ordering::Relaxed);
}

fn realtime_send() -> Option<pg_sys::Oid> {
    let mut oid = REALTIME.load(Ordering::Relaxed);
    if oid == UNKNOWN {
        let found = Spi::connect_mut(|client| {
            crate::statement::first(TRUSTED_REALTIME_SEND.run(client, &[]))
                .and_then(|row| crate::statement::only::<pg_sys::Oid>(&row))
        })
        .unwrap_or(pg_sys::InvalidOid);
        oid = u32::from(found);
        REALTIME.store(oid, Ordering::Relaxed);
    }
    (oid != u32::from(pg_sys::InvalidOid)).then(|| pg_sys::Oid::from(oid))
}

/// Whether emitted events go anywhere; callers may skip building payloads when not.
pub fn enabled() -> bool {
    realtime_send().is_some() || guc::NOTIFY_EVENTS.get()
}

/// Sends one event. `event` is e.g. `run:completed` or `step:<slug>:started`,
/// `topic` is `pgflow:run:<run_id>`.
pub fn emit(event: &str, topic: &str, payload: Jsonb) {
    if realtime_send().is_some() {
        // Through SQL, so that any implementation works (a LANGUAGE sql one returns NULL).
        Spi::connect_mut(|client| {
            REALTIME_SEND_CALL.run(client, &[payload.into(), event.into(), topic.into()]);
        });
    } else if guc::NOTIFY_EVENTS.get() {
        notify(event, topic, payload);
    }
}

fn notify(event: &str, topic: &str, payload: Jsonb) {
    let body = unsafe {
        pgrx::direct_function_call::<&CStr>(pg_sys::jsonb_out, &[Some(payload.0)])
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|| "null".into())
    };
    let event_json = serde_quote(event);
    let mut message = format!("{{\"event\": {event_json}, \"payload\": {body}}}");
    if message.len() > NOTIFY_PAYLOAD_LIMIT {
        message = format!(
            "{{\"event\": {event_json}, \"topic\": {}, \"truncated\": true}}",
            serde_quote(topic)
        );
    }
    unsafe {
        pgrx::direct_function_call::<()>(
            pg_sys::pg_notify,
            &[topic.into_datum(), message.as_str().into_datum()],
        );
    }
}

/// A JSON string literal (event names and topics hold no control characters).
fn serde_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::serde_quote;

    #[test]
    fn quotes_json_strings() {
        assert_eq!(serde_quote("step:a:started"), "\"step:a:started\"");
        assert_eq!(serde_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
