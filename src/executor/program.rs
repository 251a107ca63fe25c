//! Program handlers: the executor runs an OS program (argv, no shell) as the server's OS user,
//! writes the task's input JSON to its standard input, and takes its standard output, parsed as
//! JSON, as the task's output (empty output: JSON null). A non-zero exit fails the attempt with
//! the tail of its standard error. A timeout or a cancellation kills the program's whole process
//! group. Its effects are outside the database: delivery is at least once.
//!
//! The environment carries PGFLOW_RUN_ID, PGFLOW_FLOW_SLUG, PGFLOW_STEP_SLUG, PGFLOW_TASK_INDEX
//! and PGFLOW_FLOW_INPUT (the run input as JSON).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::datum::Jsonb;

/// How much of standard error goes into the error message.
const STDERR_TAIL: usize = 2000;
/// How often the executor looks at the program, its deadline and its interrupts.
const POLL: Duration = Duration::from_millis(5);

/// The task a program runs for, as its environment shows it.
pub(crate) struct ProgramTask<'a> {
    pub flow_slug: &'a str,
    pub step_slug: &'a str,
    pub run_id: pgrx::Uuid,
    pub task_index: i32,
}

/// Kills the program's process group unless it has exited (also when an error unwinds).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
}

fn jsonb_text(datum: Option<pg_sys::Datum>) -> String {
    let Some(datum) = datum else {
        return "null".to_string();
    };
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(datum)])
            .map(|text| {
                std::ffi::CStr::from_ptr(text.cast_mut_ptr::<std::ffi::c_char>())
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|| "null".to_string())
    }
}

fn fail(message: String) -> ! {
    crate::error::error(PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, message)
}

/// Runs the program of `argv` for a task and returns its output.
pub(crate) fn run(
    argv: &[String],
    task: &ProgramTask<'_>,
    input: Option<pg_sys::Datum>,
    flow_input: Option<pg_sys::Datum>,
    timeout: i32,
) -> Jsonb {
    let Some((program, args)) = argv.split_first() else {
        fail("a program handler needs at least the program".to_string());
    };
    let stdin_text = jsonb_text(input);
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PGFLOW_RUN_ID", task.run_id.to_string())
        .env("PGFLOW_FLOW_SLUG", task.flow_slug)
        .env("PGFLOW_STEP_SLUG", task.step_slug)
        .env("PGFLOW_TASK_INDEX", task.task_index.to_string())
        .env("PGFLOW_FLOW_INPUT", jsonb_text(flow_input))
        .process_group(0);
    let child = command
        .spawn()
        .unwrap_or_else(|e| fail(format!("could not start program \"{program}\": {e}")));
    let mut running = Running(child);

    // The pipes are served by threads that touch nothing of PostgreSQL, so that a program that
    // writes much, or reads its input late, never blocks the executor.
    let mut stdin = running.0.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(pipe) = stdin.as_mut() {
            let _ = pipe.write_all(stdin_text.as_bytes());
        }
    });
    let mut stdout = running.0.stdout.take();
    let out_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(pipe) = stdout.as_mut() {
            let _ = pipe.read_to_end(&mut buffer);
        }
        buffer
    });
    let mut stderr = running.0.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(pipe) = stderr.as_mut() {
            let _ = pipe.read_to_end(&mut buffer);
        }
        buffer
    });

    let deadline = Instant::now() + Duration::from_secs(timeout.max(1) as u64);
    let status = loop {
        match running.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => fail(format!("could not wait for program \"{program}\": {e}")),
        }
        if Instant::now() >= deadline {
            drop(running);
            super::sql_handler::mark_timed_out();
            crate::error::error(
                PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                format!("program \"{program}\" killed at its timeout"),
            );
        }
        // A cancel request or SIGTERM raises here; dropping `running` kills the program.
        pg_sys::check_for_interrupts!();
        std::thread::sleep(POLL);
    };
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let tail_start = stderr.len().saturating_sub(STDERR_TAIL);
        let tail = String::from_utf8_lossy(&stderr[tail_start..])
            .trim()
            .to_string();
        let code = status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "a signal".to_string());
        fail(format!("program \"{program}\" failed with {code}: {tail}"));
    }
    let text = String::from_utf8(stdout).unwrap_or_else(|_| {
        fail(format!(
            "program \"{program}\" wrote output that is not UTF-8"
        ))
    });
    if text.trim().is_empty() {
        return Jsonb(super::sql_handler::json_null());
    }
    let text = std::ffi::CString::new(text.trim())
        .unwrap_or_else(|_| fail(format!("program \"{program}\" wrote a NUL byte")));
    let parsed = super::super::transaction::in_subtransaction(
        || unsafe {
            pgrx::direct_function_call_as_datum(
                pg_sys::jsonb_in,
                &[Some(pg_sys::Datum::from(text.as_ptr()))],
            )
        },
        |_| true,
    );
    match parsed {
        Ok(Some(datum)) => Jsonb(datum),
        _ => fail(format!(
            "program \"{program}\" wrote output that is not JSON"
        )),
    }
}
