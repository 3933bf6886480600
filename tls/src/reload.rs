//! A configuration built from files, rebuilt when they change.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::TlsError;

/// How often the files are looked at, at most: a handshake storm reads them once a second.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of a file: its bytes, since a renewed certificate can have the
/// same length and, on a file system with coarse timestamps, the same mtime as the one it
/// replaces. A file that cannot be read has none.
type Stamp = Option<Vec<u8>>;

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    // Follows symlinks: a Kubernetes Secret volume swaps a `..data` link.
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

pub(crate) struct Reloading<T> {
    paths: Vec<PathBuf>,
    build: Build<T>,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    /// The files' stamps when `current` was built from them.
    built_from: Vec<Stamp>,
    checked: Instant,
}

impl<T> Reloading<T> {
    /// Builds the first configuration; an error here is the operator's to fix before start.
    pub(crate) fn new(
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let built_from = stamps(&paths);
        let current = Arc::new(build()?);
        Ok(Reloading {
            paths,
            build: Box::new(build),
            state: Mutex::new(State {
                current,
                built_from,
                checked: Instant::now(),
            }),
        })
    }

    pub(crate) fn current(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RECHECK_EVERY {
            state.checked = Instant::now();
            let now = stamps(&self.paths);
            if now != state.built_from {
                match (self.build)() {
                    Ok(config) => {
                        tracing::info!(files = ?self.paths, "TLS files changed; reloaded");
                        state.current = Arc::new(config);
                        state.built_from = now;
                    }
                    // Kept unmarked, so the next check tries again.
                    Err(e) => tracing::warn!(
                        error = %e,
                        "TLS files changed but do not load; keeping the previous ones"
                    ),
                }
            }
        }
        state.current.clone()
    }
}
