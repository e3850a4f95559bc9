//! Running jobs from async code: off the runtime's worker threads, bounded in concurrency.

use std::sync::Arc;

use agora_types::Hash;
use tokio::sync::Semaphore;

use crate::executor::{ExecError, Executor, JobRun};
use crate::outcome::{ExecResult, Outcome};
use crate::ExecConfig;

/// A job with owned data, to move onto the blocking pool.
#[derive(Clone, Debug)]
pub struct OwnedJob {
    pub job_id: Hash,
    pub module: Arc<[u8]>,
    pub input: Arc<[u8]>,
    pub args: Vec<String>,
    pub fuel: u64,
    pub memory_limit_bytes: u64,
}

impl OwnedJob {
    pub fn as_run(&self) -> JobRun<'_> {
        JobRun {
            job_id: self.job_id,
            module: &self.module,
            input: &self.input,
            args: &self.args,
            fuel: self.fuel,
            memory_limit_bytes: self.memory_limit_bytes,
        }
    }
}

/// An [`Executor`] for async callers: each run goes to tokio's blocking pool, and at most
/// `ExecConfig::concurrency` run at once (the others wait for a permit, in FIFO order).
#[derive(Clone)]
pub struct AsyncExecutor {
    inner: Arc<Executor>,
    permits: Arc<Semaphore>,
}

impl AsyncExecutor {
    pub fn new(config: ExecConfig) -> Result<AsyncExecutor, ExecError> {
        Ok(Self::from_executor(Arc::new(Executor::new(config)?)))
    }

    pub fn from_executor(inner: Arc<Executor>) -> AsyncExecutor {
        let permits = Arc::new(Semaphore::new(inner.config().concurrency.max(1)));
        AsyncExecutor { inner, permits }
    }

    pub fn executor(&self) -> &Arc<Executor> {
        &self.inner
    }

    /// Runs currently holding a permit.
    pub fn busy(&self) -> usize {
        self.inner.config().concurrency.max(1) - self.permits.available_permits()
    }

    /// Run a job on the blocking pool. Must be called inside a tokio runtime.
    pub async fn run(&self, job: OwnedJob) -> ExecResult {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return ExecResult::failed(Outcome::Internal("executor closed".into())),
        };
        let inner = self.inner.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let r = inner.run(job.as_run());
            drop(permit);
            r
        });
        match handle.await {
            Ok(r) => r,
            Err(e) => ExecResult::failed(Outcome::Internal(format!("execution task failed: {e}"))),
        }
    }

    /// As [`Executor::prepare`], on the blocking pool (compiling can take tens of milliseconds).
    pub async fn prepare(&self, module: Arc<[u8]>) -> Result<Hash, ExecError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.prepare(&module))
            .await
            .map_err(|e| ExecError::Engine(format!("compile task failed: {e}")))?
    }
}
