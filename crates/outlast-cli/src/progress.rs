//! Progress bars on stderr for transfers that last more than a second, only on a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outlast_engine::progress::Unit;
use outlast_engine::{LiveStatus, Phase, Progress};

/// A bar that stays hidden for the first second, so quick commands print nothing extra.
pub struct Bar {
    bar: ProgressBar,
    start: Instant,
    shown: AtomicBool,
    enabled: bool,
    /// Set when the person asks the job to stop (Ctrl-C).
    stop: Arc<AtomicBool>,
    /// What the bar is for.
    what: String,
    /// The job's live status, and when the bar's words last followed it.
    status: Mutex<Option<(LiveStatus, Instant)>>,
}

impl Bar {
    /// A bar for a transfer of `total` bytes (unknown when `None`).
    pub fn new(total: Option<u64>, what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        let style = match total {
            Some(_) => ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"),
            None => ProgressStyle::with_template("{msg} {bytes} {bytes_per_sec}"),
        };
        bar.set_style(style.expect("valid template").progress_chars("=> "));
        bar.set_message(what.to_string());
        let enabled = std::io::stderr().is_terminal();
        Bar {
            bar,
            start: Instant::now(),
            shown: AtomicBool::new(false),
            enabled,
            stop: Arc::default(),
            what: what.to_string(),
            status: Mutex::new(None),
        }
    }

    /// The flag that asks the job this bar follows to stop.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn set_total(&self, bytes: u64) {
        self.bar.set_length(bytes);
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        self.follow_status();
        if self.enabled && !self.shown.load(Ordering::Relaxed) && self.start.elapsed() > Duration::from_secs(1) {
            self.shown.store(true, Ordering::Relaxed);
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn set_unit(&self, unit: Unit) {
        let template = match unit {
            Unit::Bytes => return,
            Unit::Items(what) => format!("{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {what} {{per_sec}} eta {{eta}}"),
        };
        let style = ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> ");
        self.bar.set_style(style);
    }

    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn watch(&self, status: LiveStatus) {
        *self.status.lock().expect("status lock") = Some((status, Instant::now()));
    }
}

impl Bar {
    /// Puts the job's phase and its errors so far in the bar's words, a few times a second.
    fn follow_status(&self) {
        let mut held = self.status.lock().expect("status lock");
        let Some((status, last)) = held.as_mut() else { return };
        if last.elapsed() < Duration::from_millis(250) {
            return;
        }
        *last = Instant::now();
        let now = status.snapshot();
        let mut words = self.what.clone();
        let phase = match now.phase {
            Phase::Listing => Some("listing"),
            Phase::Counting => Some("counting"),
            Phase::Tombstones => Some("tombstones"),
            Phase::Stopping => Some("stopping"),
            Phase::Starting | Phase::Working | Phase::Done => None,
        };
        if let Some(phase) = phase {
            words.push_str(&format!(" ({phase})"));
        }
        let errors: u64 = now.errors_by_provider.values().sum();
        if errors > 0 {
            let worst = now.errors_by_provider.iter().max_by_key(|(_, n)| **n).map(|(p, _)| p.as_str()).unwrap_or("");
            words.push_str(&format!(
                " ({errors} errors{})",
                if worst.is_empty() { String::new() } else { format!(", most on `{worst}`") }
            ));
        }
        self.bar.set_message(words);
    }
}
