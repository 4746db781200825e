//! How far a running workload is: counters the workload bumps as requests
//! finish and whoever shows progress reads when it likes. Relaxed atomics,
//! so counting costs the driver nothing measurable and never waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct Progress {
    total: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    /// Every request finished since the counters were made, never reset:
    /// whether a step sent anything at all.
    ever: AtomicU64,
    /// What is being counted now, e.g. `warmup round` or `store pass`.
    stage: Mutex<String>,
    started: Mutex<Instant>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ever: AtomicU64::new(0),
            stage: Mutex::new(String::new()),
            started: Mutex::new(Instant::now()),
        }
    }
}

/// One reading of a [`Progress`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub stage: String,
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    /// Seconds since the counters were last reset.
    pub elapsed_secs: f64,
}

impl Snapshot {
    /// Requests per second so far.
    pub(crate) fn rate(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.done as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }

    /// Seconds left at the rate so far, once there is a rate.
    pub(crate) fn eta_secs(&self) -> Option<f64> {
        let rate = self.rate();
        (rate > 0.0 && self.total >= self.done).then(|| (self.total - self.done) as f64 / rate)
    }
}

impl Progress {
    /// Starts counting `total` requests of a new stage from zero.
    pub(crate) fn start(&self, stage: &str, total: u64) {
        *self.stage.lock().unwrap_or_else(|p| p.into_inner()) = stage.to_string();
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.done.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// One request finished, successfully or not.
    pub(crate) fn finished(&self, ok: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.ever.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests finished since the counters were made, across stages.
    pub(crate) fn requests_ever(&self) -> u64 {
        self.ever.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            stage: self.stage.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            total: self.total.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            elapsed_secs: self
                .started
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                .as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_restart_with_each_stage() {
        let p = Progress::default();
        p.start("warmup round", 4);
        p.finished(true);
        p.finished(false);
        let s = p.snapshot();
        assert_eq!(
            (s.stage.as_str(), s.total, s.done, s.failed),
            ("warmup round", 4, 2, 1)
        );
        p.start("query round", 3);
        let s = p.snapshot();
        assert_eq!((s.total, s.done, s.failed), (3, 0, 0));
        assert_eq!(s.eta_secs(), None, "no rate yet");
    }
}
