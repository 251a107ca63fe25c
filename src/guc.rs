//! Every setting of pgflow_core.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `pgflow.notify_events`: where `realtime.send` does not exist, send run and step events with
/// pg_notify on channel `pgflow:run:<run_id>`. Off by default: NOTIFY serialises committing
/// transactions.
pub static NOTIFY_EVENTS: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pgflow.notify_events",
        c"Send run and step events with pg_notify when realtime.send does not exist.",
        c"Channel pgflow:run:<run_id>; payload {\"event\": ..., \"payload\": ...}. NOTIFY serialises committing transactions, so this is off by default.",
        &NOTIFY_EVENTS,
        GucContext::Userset,
        GucFlags::default(),
    );
}
