//! pgflow_core: DAG workflows inside PostgreSQL.
//!
//! Modules: `queue` is the pgmq-compatible queue layer (schema `pgmq`).

::pgrx::pg_module_magic!(name, version);

pub mod queue;

pgrx::extension_sql_file!("../sql/pgmq.sql", name = "pgmq", bootstrap);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
