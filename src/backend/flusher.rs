//! Persists fjall's journal on a timer, so a restart replays at most that much of the raft WAL
//! (as sled's `flush_every_ms` did before).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// The running timer; dropping it stops the thread.
pub(super) struct Flusher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts persisting `db` every `every`.
    pub(super) fn start(db: fjall::Database, every: Duration) -> Flusher {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("backend-flush".into())
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = db.persist(fjall::PersistMode::SyncData) {
                            tracing::error!(error = ?e, "persisting the backend journal failed");
                        }
                    }
                    // Stopped, or the backend is gone.
                    _ => return,
                }
            })
            .expect("spawn backend-flush thread");
        Flusher {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
