//! Result lines (`RESULT workload=... key=value ...`), JSON objects and the summary table.

use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub enum Val {
    Int(i64),
    Float(f64),
    Str(String),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Int(i) => i.to_string(),
            Val::Float(f) => fmt_num(*f),
            Val::Str(s) => s.replace(char::is_whitespace, "_"),
        }
    }
    fn json(&self) -> Value {
        match self {
            Val::Int(i) => Value::from(*i),
            Val::Float(f) => {
                // Round to 3 decimals so the JSON matches the RESULT line.
                serde_json::Number::from_f64((f * 1000.0).round() / 1000.0)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
            Val::Str(s) => Value::from(s.clone()),
        }
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<usize> for Val {
    fn from(v: usize) -> Self {
        Val::Int(v as i64)
    }
}
impl From<u64> for Val {
    fn from(v: u64) -> Self {
        Val::Int(v as i64)
    }
}
impl From<i32> for Val {
    fn from(v: i32) -> Self {
        Val::Int(v as i64)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Float(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Str(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Str(v)
    }
}

/// Formats a measurement: 3 decimals below 10, 2 below 1000, 1 above.
pub fn fmt_num(f: f64) -> String {
    if !f.is_finite() {
        return "nan".into();
    }
    let a = f.abs();
    if a < 10.0 {
        format!("{f:.3}")
    } else if a < 1000.0 {
        format!("{f:.2}")
    } else {
        format!("{f:.1}")
    }
}

/// Key/value pairs of one result, in print order.
#[derive(Default, Clone)]
pub struct Kv(pub Vec<(String, Val)>);

impl Kv {
    pub fn new() -> Self {
        Kv(Vec::new())
    }
    pub fn add(&mut self, k: &str, v: impl Into<Val>) -> &mut Self {
        self.0.push((k.to_string(), v.into()));
        self
    }
    /// `key=value key=value ...`
    pub fn line(&self) -> String {
        let pairs: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}={}", v.text()))
            .collect();
        pairs.join(" ")
    }
}

/// Prints the RESULT line (and the JSON object when asked).
pub fn emit(workload: &str, kv: &Kv, json: bool) {
    println!("RESULT workload={workload} {}", kv.line());
    if json {
        let mut m = Map::new();
        m.insert("workload".into(), Value::from(workload));
        for (k, v) in &kv.0 {
            m.insert(k.clone(), v.json());
        }
        println!("{}", Value::Object(m));
    }
}

/// One row of the summary table.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub workload: String,
    pub params: String,
    pub figure: String,
    /// Throughput rows: (units per second, client count) for the comparison with `limit`.
    pub throughput: Option<(f64, usize)>,
}

pub fn print_table(rows: &[Outcome]) {
    if rows.is_empty() {
        return;
    }
    let limit_at = |clients: usize| {
        rows.iter()
            .find(|r| r.workload == "limit" && r.throughput.map(|t| t.1) == Some(clients))
            .and_then(|r| r.throughput.map(|t| t.0))
    };
    let mut table: Vec<[String; 4]> = vec![[
        "workload".into(),
        "parameters".into(),
        "main figure".into(),
        "vs limit (same clients)".into(),
    ]];
    for r in rows {
        let frac = match r.throughput {
            _ if r.workload == "limit" => "-".into(),
            Some((v, clients)) => match limit_at(clients) {
                Some(l) if l > 0.0 => {
                    format!("{:.3}  (limit W={clients}: {} tasks/s)", v / l, fmt_num(l))
                }
                _ => "-".into(),
            },
            None => "-".into(),
        };
        table.push([r.workload.clone(), r.params.clone(), r.figure.clone(), frac]);
    }
    let mut width = [0usize; 4];
    for row in &table {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    println!();
    for (n, row) in table.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("{}", cells.join("  ").trim_end());
        if n == 0 {
            let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
            println!("{}", rule.join("  "));
        }
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(123.456), "123.46");
        assert_eq!(fmt_num(12345.67), "12345.7");
        assert_eq!(Val::from("a b").text(), "a_b");
    }
}
