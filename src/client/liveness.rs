//! Whether a server still answers. A request that reached nothing (refused,
//! reset, timed out) is followed by one short probe; when that reaches
//! nothing either, the server is taken for dead and every later request
//! through the client fails at once with that reason, instead of each
//! waiting out its own timeout.

use std::sync::Mutex;

#[derive(Debug, Default)]
pub(crate) struct Liveness {
    dead: Mutex<Option<String>>,
}

impl Liveness {
    /// Why the server is taken for dead, once it is.
    pub(crate) fn dead(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Takes the server for dead; the first reason given stays.
    pub(crate) fn mark_dead(&self, why: String) {
        self.lock().get_or_insert(why);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.dead.lock().unwrap_or_else(|p| p.into_inner())
    }
}
