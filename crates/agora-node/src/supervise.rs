//! Fail-stop supervision of the node's tasks.
//!
//! Every task the daemon starts is spawned through a [`Supervisor`]. A task that panics, returns
//! an error, or (for a service that must run until shutdown) returns before the node was asked
//! to stop, records the first such failure, logs it as one `node.fatal` line and triggers the
//! shutdown; the daemon then stops every other task, leaves the store as the last durable step
//! wrote it (a market that may be half-changed is never snapshotted) and exits non-zero. A node
//! is either fully working or gone, never a process whose API answers for a dead chain.

use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::daemon::Shutdown;

/// Spawns and watches the node's tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Supervisor {
    shutdown: Shutdown,
    failure: Arc<Mutex<Option<(Severity, String)>>>,
}

/// How telling a failure is: a task that merely ended early is often the consequence of another
/// one's panic or error (its input closed), so a panic or an error recorded later replaces it
/// as the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Severity {
    EndedEarly,
    Failed,
}

impl Supervisor {
    pub fn new(shutdown: Shutdown) -> Supervisor {
        Supervisor {
            shutdown,
            failure: Arc::default(),
        }
    }

    /// A service that runs until the shutdown signal: its panic, its error, or its end before
    /// the signal stops the node. The handle yields its value when it ended well.
    pub fn spawn_service<T, F>(&self, name: &'static str, task: F) -> JoinHandle<Option<T>>
    where
        F: std::future::Future<Output = Result<T, String>> + Send + 'static,
        T: Send + 'static,
    {
        self.watch(name, true, task)
    }

    /// A loop that runs until the shutdown signal, which stops it: an error or an end before
    /// the signal stops the node.
    pub fn spawn_until_shutdown<F>(&self, name: &'static str, task: F) -> JoinHandle<Option<()>>
    where
        F: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let stopping = self.shutdown.wait();
        self.spawn_service(name, async move {
            tokio::select! {
                r = task => r,
                () = stopping => Ok(()),
            }
        })
    }

    /// A task that ends by itself (one execution, one fetch): its panic or its error stops
    /// the node.
    pub fn spawn_helper<F>(&self, name: &'static str, task: F) -> JoinHandle<Option<()>>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.watch(name, false, async move {
            task.await;
            Ok(())
        })
    }

    fn watch<T, F>(&self, name: &'static str, service: bool, task: F) -> JoinHandle<Option<T>>
    where
        F: std::future::Future<Output = Result<T, String>> + Send + 'static,
        T: Send + 'static,
    {
        let inner = tokio::spawn(task);
        let me = self.clone();
        tokio::spawn(async move {
            match inner.await {
                Ok(Ok(v)) => {
                    if service && !me.shutdown.triggered() {
                        me.record(
                            name,
                            Severity::EndedEarly,
                            "stopped before the node was asked to stop".into(),
                        );
                    }
                    Some(v)
                }
                Ok(Err(why)) => {
                    me.fail(name, why);
                    None
                }
                Err(join) if join.is_panic() => {
                    me.fail(
                        name,
                        format!("panicked: {}", panic_message(join.into_panic())),
                    );
                    None
                }
                // Cancelled: only the runtime shutting down does that.
                Err(_) => None,
            }
        })
    }

    /// Record `why` as the node's failure (the first one wins, but a panic or an error
    /// outranks a task that only ended early) and stop the node.
    pub fn fail(&self, task: &str, why: String) {
        self.record(task, Severity::Failed, why);
    }

    fn record(&self, task: &str, severity: Severity, why: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.as_ref().is_none_or(|(s, _)| *s < severity) {
            tracing::error!(target: "node.fatal", task, reason = %why, "a node task failed: stopping the node");
            *failure = Some((severity, format!("the node's {task} task failed: {why}")));
        } else {
            tracing::warn!(target: "node.fatal", task, reason = %why, "another node task failed while stopping");
        }
        drop(failure);
        self.shutdown.trigger();
    }

    /// The node's failure, if any task failed.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, why)| why.clone())
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_an_error_or_an_early_end_stops_the_node_and_the_first_one_is_reported() {
        let shutdown = Shutdown::default();
        let s = Supervisor::new(shutdown.clone());
        // A helper that ends well is no failure.
        assert_eq!(s.spawn_helper("fetch", async {}).await.unwrap(), Some(()));
        assert!(s.failure().is_none() && !shutdown.triggered());

        let h = s.spawn_service("chain", async {
            if true {
                panic!("applying block 3");
            }
            Ok::<u32, String>(1)
        });
        assert_eq!(h.await.unwrap(), None);
        assert!(shutdown.triggered());
        let why = s.failure().unwrap();
        assert!(
            why.contains("chain task failed: panicked: applying block 3"),
            "{why}"
        );
        // Later failures do not replace the first.
        s.spawn_service("agent", async { Err::<(), _>("late".to_owned()) })
            .await
            .unwrap();
        assert_eq!(s.failure().unwrap(), why);
    }

    #[tokio::test]
    async fn a_panic_after_an_early_end_is_reported_as_the_cause() {
        let s = Supervisor::new(Shutdown::default());
        // The agent's input closed because the chain task is dying: recorded first ...
        s.spawn_service("agent", async { Ok::<(), String>(()) })
            .await
            .unwrap();
        assert!(s
            .failure()
            .unwrap()
            .contains("agent task failed: stopped before"));
        // ... and replaced by the panic that caused it.
        s.spawn_service("chain", async {
            if true {
                panic!("applying block 3");
            }
            Ok::<(), String>(())
        })
        .await
        .unwrap();
        assert!(s
            .failure()
            .unwrap()
            .contains("chain task failed: panicked: applying block 3"));
    }

    #[tokio::test]
    async fn a_service_that_returns_before_the_signal_is_a_failure_and_after_it_is_not() {
        let shutdown = Shutdown::default();
        let s = Supervisor::new(shutdown.clone());
        assert_eq!(
            s.spawn_service("api", async { Ok::<u8, String>(7) })
                .await
                .unwrap(),
            Some(7)
        );
        assert!(s
            .failure()
            .unwrap()
            .contains("api task failed: stopped before"));

        let shutdown = Shutdown::default();
        let s = Supervisor::new(shutdown.clone());
        let wait = shutdown.wait();
        let h = s.spawn_service("api", async move {
            wait.await;
            Ok::<(), String>(())
        });
        shutdown.trigger();
        assert_eq!(h.await.unwrap(), Some(()));
        assert!(s.failure().is_none());
    }
}
