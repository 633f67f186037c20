//! A progress bar that appears only when the work lasts more than a second.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct DelayedProgress {
    bar: ProgressBar,
    start: Instant,
    shown: bool,
}

const DELAY: Duration = Duration::from_secs(1);

impl DelayedProgress {
    pub fn new(total_bytes: u64, label: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        DelayedProgress {
            bar,
            start: Instant::now(),
            shown: false,
        }
    }

    pub fn inc(&mut self, bytes: u64) {
        self.bar.inc(bytes);
        if !self.shown && self.start.elapsed() > DELAY {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
    }

    pub fn finish(self) {
        if self.shown {
            self.bar.finish_and_clear();
        }
    }
}
