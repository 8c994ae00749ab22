//! Pausing the applier: the one moment a defragmentation needs nobody writing to the backend
//! (copying the tail and switching databases). Raft keeps committing while the applier waits;
//! entries queue up and are applied as soon as the pause ends.

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use parking_lot::Mutex;

/// A pending request to pause, handed from the requester to the applier.
pub(super) struct PauseRequest {
    paused: Sender<()>,
    resume: Receiver<()>,
}

impl PauseRequest {
    /// Tells the requester the applier has stopped (its group committed), then waits until
    /// the requester's [`Paused`] guard is dropped.
    pub(super) fn hold(self) {
        if self.paused.send(()).is_ok() {
            // Returns when the guard's sender is dropped.
            let _ = self.resume.recv();
        }
    }
}

/// Where a pause request waits for the applier to pick it up.
#[derive(Default)]
pub struct PauseGate {
    pending: Mutex<Option<PauseRequest>>,
}

/// While this lives the applier does nothing; dropping it resumes it.
pub struct Paused {
    _resume: Sender<()>,
}

impl PauseGate {
    /// Asks the applier to commit its open group and stop, and waits (blocking, up to
    /// `timeout`) until it has. `None` if it did not stop in time (e.g. it has exited).
    pub fn pause(&self, timeout: Duration) -> Option<Paused> {
        let (paused_tx, paused_rx) = mpsc::channel();
        let (resume_tx, resume_rx) = mpsc::channel();
        *self.pending.lock() = Some(PauseRequest {
            paused: paused_tx,
            resume: resume_rx,
        });
        match paused_rx.recv_timeout(timeout) {
            Ok(()) => Some(Paused { _resume: resume_tx }),
            Err(_) => {
                self.pending.lock().take();
                None
            }
        }
    }

    /// The pending request, if any (the applier checks between tasks).
    pub(super) fn take(&self) -> Option<PauseRequest> {
        self.pending.lock().take()
    }
}
