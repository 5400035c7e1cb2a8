//! In-process components: the plugin's object called through the stable ABI. Verifier, rubric
//! and algorithm calls run on the component's own worker thread and are abandoned when they miss
//! the deadline (the call keeps running on that thread; isolated mode is the remedy for plugins
//! that hang). Sampler calls run inline on the rollout threads (one per row per token, too
//! frequent for a thread hop) and a call over the deadline is reported as an error afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RResult, RSlice, RSliceMut};
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use rlvr_core::extensions::{
    AlgoBatch, AlgoOutput, ComponentKind, ComponentScore, Instance, RewardComponent, ScoreItem,
    TokenAlgorithm, TokenSampler,
};
use rlvr_plugin_api::ffi::{ComponentBox, PluginModule_Ref};

use crate::convert;
use crate::crash::{self, CallSite};

type Job = Box<dyn FnOnce() + Send>;

/// A worker thread that runs calls with a deadline; a call that misses it is abandoned with its
/// thread and the next call starts a new one.
pub(crate) struct DeadlineWorker {
    name: String,
    tx: Mutex<Option<Sender<Job>>>,
}

impl DeadlineWorker {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            tx: Mutex::new(None),
        }
    }

    fn spawn(&self) -> Result<Sender<Job>, String> {
        let (tx, rx) = bounded::<Job>(1);
        std::thread::Builder::new()
            .name(format!("plugin-{}", self.name))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .map_err(|e| format!("cannot start a plugin thread: {e}"))?;
        Ok(tx)
    }

    /// Runs `f` on the worker and waits at most `deadline`.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        deadline: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (rtx, rrx) = bounded(1);
        let job: Job = Box::new(move || {
            let _ = rtx.send(f());
        });
        let mut guard = self.tx.lock().map_err(|_| "plugin worker lock poisoned")?;
        let tx = match guard.take() {
            Some(tx) => tx,
            None => self.spawn()?,
        };
        tx.send(job)
            .map_err(|_| "plugin worker ended".to_string())?;
        match rrx.recv_timeout(deadline) {
            Ok(v) => {
                *guard = Some(tx);
                Ok(v)
            }
            // The worker is left to finish (or hang) on its own; the next call gets a new one.
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "missed its deadline of {} ms (the call was abandoned; host plugins that hang in \
                 isolated mode)",
                deadline.as_millis()
            )),
            Err(RecvTimeoutError::Disconnected) => Err("plugin worker ended".to_string()),
        }
    }
}

/// An in-process component.
struct InProc {
    obj: Arc<ComponentBox>,
    worker: DeadlineWorker,
    deadline: Duration,
    site: &'static CallSite,
}

/// Which plugin library a component comes from (for the crash trace).
pub(crate) struct Origin<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) lib: &'a std::path::Path,
}

pub(crate) fn instantiate(
    module: PluginModule_Ref,
    kind: ComponentKind,
    name: &str,
    params_json: &str,
    deadline: Duration,
    origin: &Origin<'_>,
) -> Result<Instance, String> {
    let site = CallSite::leak(origin.plugin, origin.lib, &kind.to_string(), name);
    let made = {
        let _in = crash::enter(site);
        (module.instantiate())(convert::kind_to_ffi(kind), name.into(), params_json.into())
    };
    let obj = match made {
        RResult::ROk(o) => o,
        RResult::RErr(e) => return Err(e.to_string()),
    };
    let comp = Arc::new(InProc {
        obj: Arc::new(obj),
        worker: DeadlineWorker::new(name),
        deadline,
        site,
    });
    Ok(match kind {
        ComponentKind::Verifier | ComponentKind::Rubric => Instance::Reward(comp),
        ComponentKind::Sampler => Instance::Sampler(comp),
        ComponentKind::Algorithm => Instance::Algorithm(comp),
    })
}

impl RewardComponent for InProc {
    fn score_batch(&self, items: &[ScoreItem<'_>]) -> Vec<Result<ComponentScore, String>> {
        let n = items.len();
        let batch = convert::items(items);
        let obj = self.obj.clone();
        let site = self.site;
        match self.worker.run(self.deadline, move || {
            let _in = crash::enter(site);
            convert::scores(obj.score(RSlice::from_slice(batch.as_slice())), n)
        }) {
            Ok(v) => v,
            Err(e) => vec![Err(e); n],
        }
    }
}

impl TokenSampler for InProc {
    fn transform(
        &self,
        logits: &mut [f32],
        position: usize,
        generated: &[u32],
    ) -> Result<(), String> {
        let t0 = Instant::now();
        let _in = crash::enter(self.site);
        let r = self.obj.transform(
            RSliceMut::from_mut_slice(logits),
            position as u32,
            RSlice::from_slice(generated),
        );
        if let RResult::RErr(e) = r {
            return Err(e.to_string());
        }
        let took = t0.elapsed();
        if took > self.deadline {
            return Err(format!(
                "took {} ms, over its deadline of {} ms",
                took.as_millis(),
                self.deadline.as_millis()
            ));
        }
        Ok(())
    }
}

impl TokenAlgorithm for InProc {
    fn compute(&self, batch: &AlgoBatch) -> Result<AlgoOutput, String> {
        let b = convert::batch(batch);
        let obj = self.obj.clone();
        let site = self.site;
        self.worker
            .run(self.deadline, move || {
                let _in = crash::enter(site);
                match obj.advantages(&b) {
                    RResult::ROk(o) => Ok(convert::output(&o)),
                    RResult::RErr(e) => Err(e.to_string()),
                }
            })
            .and_then(|r| r)
    }
}
