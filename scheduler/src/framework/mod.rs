//! The scheduling framework: kube-scheduler's extension points as traits, the per-cycle state,
//! the snapshot plugins read, and [`Framework::schedule`], which runs one scheduling cycle.

mod cycle_state;
mod interface;
mod runner;
mod status;
mod types;

pub use cycle_state::CycleState;
pub use interface::{
    FilterPlugin, MAX_NODE_SCORE, MIN_NODE_SCORE, NodeScore, Plugin, PostFilterPlugin,
    PreFilterPlugin, PreScorePlugin, QueueSortPlugin, QueuedPod, ReservePlugin, ScorePlugin,
};
pub use runner::{Diagnosis, FitError, Framework, ScheduleError, ScheduleResult};
pub(crate) use runner::{PREFETCH_AHEAD, prefetch_node};
pub use status::{Code, Status};
pub use types::{
    DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST, HostPort, NodeInfo, PodInfo, Resources,
    Snapshot, is_scalar_resource,
};
