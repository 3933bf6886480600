//! `dura server start-test`: what makes start-dev's node a drop-in for Temporal's Java test
//! server — its `TestService` over the engine's time-skipping clock ([`crate::clock`]), and a
//! temporary state directory that survives no run, although the SDKs stop the server with
//! SIGKILL (which leaves no chance to remove it on the way out).

use std::sync::Arc;

use dura_history::time::{from_duration, from_timestamp, to_timestamp};
use temporalio_protos::temporal::api::testservice::v1 as pb;
use tonic::{Request, Response, Status};

use crate::{clock::VirtualClock, error::ApiError, grpc::testservice::test_service_server};

/// The prefix of a test server's state directory; the pid after it tells whose it is.
const STATE_DIR_PREFIX: &str = "dura-test-server-";

/// A fresh state directory for this process, after removing those of test servers that were
/// killed: their pid (in the name) is no longer running.
pub fn state_dir() -> std::io::Result<tempfile::TempDir> {
    let parent = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(STATE_DIR_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !is_running(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{STATE_DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(parent)
}

/// Whether process `pid` is alive: it exists and is no zombie (a killed server whose parent
/// has not reaped it yet).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// `temporal.api.testservice.v1.TestService` over the engine's virtual clock.
pub struct TestService {
    pub clock: Arc<VirtualClock>,
}

fn status(e: impl Into<ApiError>) -> Status {
    e.into().into()
}

#[tonic::async_trait]
impl test_service_server::TestService for TestService {
    async fn lock_time_skipping(
        &self,
        _: Request<pb::LockTimeSkippingRequest>,
    ) -> Result<Response<pb::LockTimeSkippingResponse>, Status> {
        self.clock.lock();
        Ok(Response::new(pb::LockTimeSkippingResponse {}))
    }

    async fn unlock_time_skipping(
        &self,
        _: Request<pb::UnlockTimeSkippingRequest>,
    ) -> Result<Response<pb::UnlockTimeSkippingResponse>, Status> {
        self.clock.unlock().map_err(status)?;
        Ok(Response::new(pb::UnlockTimeSkippingResponse {}))
    }

    /// Waits for the duration on the virtual clock, which jumps only if nothing else locks it.
    async fn sleep(
        &self,
        request: Request<pb::SleepRequest>,
    ) -> Result<Response<pb::SleepResponse>, Status> {
        let deadline = self.clock.now() + from_duration(request.into_inner().duration.as_ref());
        drop(self.clock.clone().sleep_until(deadline).await);
        Ok(Response::new(pb::SleepResponse {}))
    }

    async fn sleep_until(
        &self,
        request: Request<pb::SleepUntilRequest>,
    ) -> Result<Response<pb::SleepResponse>, Status> {
        let Some(at) = request.into_inner().timestamp else {
            return Err(status(ApiError::InvalidArgument(
                "SleepUntil needs a timestamp".into(),
            )));
        };
        drop(self.clock.clone().sleep_until(from_timestamp(&at)).await);
        Ok(Response::new(pb::SleepResponse {}))
    }

    /// The SDKs' `env.sleep`: time skips over the duration unless something else locks it.
    async fn unlock_time_skipping_with_sleep(
        &self,
        request: Request<pb::SleepRequest>,
    ) -> Result<Response<pb::SleepResponse>, Status> {
        let deadline = self.clock.now() + from_duration(request.into_inner().duration.as_ref());
        self.clock
            .unlock_while_sleeping(deadline)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SleepResponse {}))
    }

    async fn get_current_time(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::GetCurrentTimeResponse>, Status> {
        Ok(Response::new(pb::GetCurrentTimeResponse {
            time: Some(to_timestamp(self.clock.now())),
        }))
    }
}
