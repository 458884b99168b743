//! Progress of long operations (`apply` of many objects, `rollout status`, `drain`): an
//! indicatif bar or spinner on stderr when it is a terminal, plain lines otherwise, so logs
//! and pipes get the same text kubectl prints.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;
use crate::outln;

pub struct Progress {
    bar: Option<ProgressBar>,
    last_status: Option<String>,
}

impl Progress {
    /// A bar over `total` steps (or a spinner when the total is unknown); nothing is drawn
    /// unless stderr is a terminal.
    pub fn new(total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| match total {
            Some(total) => {
                let bar = ProgressBar::new(total);
                if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
                    bar.set_style(style);
                }
                bar
            }
            None => {
                let bar = ProgressBar::new_spinner();
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
        });
        Progress {
            bar,
            last_status: None,
        }
    }

    /// A result line on stdout (above the bar on a terminal).
    pub fn line(&self, text: &str) -> Result<()> {
        match &self.bar {
            Some(bar) => bar.suspend(|| outln(text)),
            None => outln(text),
        }
    }

    /// The current state: the spinner's message on a terminal, else a line on stdout when
    /// it changed (as kubectl's `rollout status` repeats only new messages).
    pub fn status(&mut self, text: &str) -> Result<()> {
        if self.last_status.as_deref() == Some(text) {
            return Ok(());
        }
        self.last_status = Some(text.to_string());
        match &self.bar {
            Some(bar) => {
                bar.set_message(text.to_string());
                Ok(())
            }
            None => outln(text),
        }
    }

    /// What is being worked on: shown on the bar only (plain output has the result lines).
    pub fn message(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_string());
        }
    }

    pub fn step(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
