//! A progress bar on stderr, drawn only when stderr is a terminal: a person watching a long run
//! sees it move, while scripts and CI logs (pipes, files) get clean output with no control
//! characters.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts finished requests and, on a terminal, redraws a bar every 200 ms until dropped.
pub struct Progress {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    drawer: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar for `total` requests labelled `what` (no bar when stderr is not a terminal).
    pub fn start(what: &str, total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let drawer = std::io::stderr().is_terminal().then(|| {
            let (done, stop, what) = (done.clone(), stop.clone(), what.to_string());
            // A plain thread: the bar must keep drawing even if every tokio worker is busy.
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    draw(&what, done.load(Ordering::Relaxed), total, start.elapsed());
                    std::thread::sleep(Duration::from_millis(200));
                }
                draw(&what, done.load(Ordering::Relaxed), total, start.elapsed());
                eprintln!();
            })
        });
        Progress { done, stop, drawer }
    }

    /// A handle that workers bump once per finished request.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(d) = self.drawer.take() {
            let _ = d.join();
        }
    }
}

/// One line: `what  [#####.....]  done / total  elapsed`.
fn draw(what: &str, done: u64, total: u64, elapsed: Duration) {
    let line = render(what, done, total, elapsed);
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r{line}");
    let _ = err.flush();
}

/// The bar's text, without the carriage return.
fn render(what: &str, done: u64, total: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 40;
    let filled = done.min(total) * WIDTH / total.max(1);
    format!(
        "{what} [{}{}] {done}/{total} {:.1}s",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize),
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion() {
        let half = render("put", 50, 100, Duration::from_millis(1500));
        assert_eq!(
            half,
            format!("put [{}{}] 50/100 1.5s", "#".repeat(20), ".".repeat(20))
        );
        let over = render("put", 150, 100, Duration::ZERO);
        assert!(over.contains(&"#".repeat(40)));
        let empty_total = render("put", 0, 0, Duration::ZERO);
        assert!(empty_total.contains(&".".repeat(40)));
    }
}
