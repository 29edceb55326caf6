//! A download's progress display, fed by the library's callbacks: on a terminal, one bar per
//! file in flight and an overall bar; otherwise one line per file as it is cached (none with
//! --quiet).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tabcache::FileEvent;

use crate::output::Output;

pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    file_style: ProgressStyle,
    in_flight: RefCell<HashMap<String, ProgressBar>>,
    lines: bool,
}

impl Bars {
    pub fn new(out: &Output) -> Bars {
        let bars = !out.quiet && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = |chars: &str| {
            ProgressStyle::with_template(
                "{msg:30!} [{bar:25}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
            )
            .expect("valid template")
            .progress_chars(chars)
        };
        // Its length is the library's total, once it knows one.
        let overall = multi.add(ProgressBar::no_length());
        overall.set_style(style("## "));
        overall.set_message("total");
        Bars {
            multi,
            overall,
            file_style: style("=> "),
            in_flight: RefCell::new(HashMap::new()),
            lines: !bars && !out.quiet,
        }
    }

    /// The library's overall `(loaded, total)`; a total of 0 is not known yet.
    pub fn overall(&self, loaded: u64, total: u64) {
        if total > 0 {
            self.overall.set_length(total);
        }
        self.overall.set_position(loaded);
    }

    pub fn file(&self, event: FileEvent<'_>) {
        match event {
            FileEvent::Progress {
                path,
                loaded,
                total,
            } => {
                let mut in_flight = self.in_flight.borrow_mut();
                let bar = in_flight.entry(path.to_string()).or_insert_with(|| {
                    let bar = self
                        .multi
                        .insert_before(&self.overall, ProgressBar::new(total));
                    bar.set_style(self.file_style.clone());
                    bar.set_message(path.to_string());
                    bar
                });
                bar.set_length(total);
                bar.set_position(loaded);
            }
            FileEvent::Done { path, size } => {
                if let Some(bar) = self.in_flight.borrow_mut().remove(path) {
                    bar.finish_and_clear();
                }
                if self.lines {
                    eprintln!("fetched {path} ({})", HumanBytes(size));
                }
            }
        }
    }

    pub fn finish(&self) {
        for (_, bar) in self.in_flight.borrow_mut().drain() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}
