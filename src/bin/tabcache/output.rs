//! What the CLI prints besides progress: notes for the person at the terminal, the library's
//! reports as `--json`, left-aligned tables, and the one error line every failure ends with.

use std::io::Write;

use serde::Serialize;
use serde_json::json;

/// The output flags every command honours.
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
}

impl Output {
    /// A note for the person at the terminal (stderr), unless quiet.
    pub fn note(&self, text: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    /// `value` as the command's `--json` answer on stdout.
    pub fn emit_json(&self, value: &impl Serialize) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, value);
        let _ = writeln!(out);
    }
}

/// One line on stderr; with `json`, also the error as JSON on stdout.
pub fn report_error(json: bool, kind: &str, message: &str, code: u8) {
    if json {
        let value = json!({"error": {"kind": kind, "message": message, "exit_code": code}});
        println!("{value}");
    }
    eprintln!("error: {}", message.replace('\n', " "));
}

/// A commit as tables show it.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

/// Left-aligned columns, two spaces apart.
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
