//! The pgmq-compatible queue layer (pgmq 1.13's functions, tables and errors).
//!
//! The SQL-facing API is defined in `sql/pgmq.sql`. This module holds the parts that need
//! the server's internals: waiting between polls and
//! waking waiting readers when messages are committed.

pub mod messages;
pub mod name;
pub mod wait;
pub mod wake;
