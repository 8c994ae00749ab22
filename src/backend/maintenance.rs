//! The backend's background work: writing the memtable out when it is full (or on a timer, to
//! bound what a restart replays from the WAL) and merging tables afterwards, which is also
//! what drops the data etcd's compaction deleted.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lsm_tree::AbstractTree;

use super::Engine;

/// How often the thread looks at the memtable when nobody wakes it.
const TICK: Duration = Duration::from_millis(200);
/// Merges run per flush at most (each is one step of the leveled strategy).
const MAX_MERGES: usize = 16;

enum Signal {
    Wake,
    Stop,
}

/// The running thread; dropping it stops the thread (after the step in progress).
pub(super) struct Maintenance {
    tx: Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Maintenance {
    /// Starts the thread for `engine`.
    pub(super) fn start(engine: Arc<Engine>) -> Maintenance {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("backend-maintenance".into())
            .spawn(move || {
                let strategy = Arc::new(lsm_tree::compaction::Leveled::default());
                let mut last_flush = Instant::now();
                loop {
                    match rx.recv_timeout(TICK) {
                        Ok(Signal::Wake) | Err(RecvTimeoutError::Timeout) => {}
                        Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let size = engine.tree.active_memtable().size();
                    let timer_due = engine
                        .opts
                        .flush_every_ms
                        .is_some_and(|ms| last_flush.elapsed() >= Duration::from_millis(ms));
                    if size == 0 || (size < engine.opts.memtable_bytes && !timer_due) {
                        continue;
                    }
                    last_flush = Instant::now();
                    if let Err(e) = step(&engine, &strategy) {
                        tracing::error!(error = ?e, dir = %engine.dir.display(), "backend maintenance failed");
                    }
                }
            })
            .expect("spawn backend-maintenance thread");
        Maintenance {
            tx,
            thread: Some(thread),
        }
    }

    /// Asks for a look at the memtable now (it is full).
    pub(super) fn wake(&self) {
        let _ = self.tx.send(Signal::Wake);
    }
}

/// Writes the memtable out, then merges tables until the strategy has nothing to do.
fn step(engine: &Engine, strategy: &Arc<lsm_tree::compaction::Leveled>) -> lsm_tree::Result<()> {
    engine.flush_memtable()?;
    for _ in 0..MAX_MERGES {
        let before = engine.tree.current_version().id();
        engine
            .tree
            .compact(strategy.clone(), engine.gc_watermark())?;
        if engine.tree.current_version().id() == before {
            break;
        }
    }
    engine.release_old_versions();
    Ok(())
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        let _ = self.tx.send(Signal::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
