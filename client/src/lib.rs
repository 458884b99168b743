//! What client-go's `tools/` give Kubernetes components, for Skiff's: leader election
//! ([`leaderelection`], client-go's `tools/leaderelection` with a Lease lock) and Events
//! ([`record`], client-go's `tools/record`).

pub mod leaderelection;
pub mod record;

pub use leaderelection::{LeaderElection, LeaderElectionConfig, LeaderElectionError};
