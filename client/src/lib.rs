//! What client-go's `tools/` give Kubernetes components, for Skiff's: leader election
//! ([`leaderelection`], client-go's `tools/leaderelection` with a Lease lock).

pub mod leaderelection;

pub use leaderelection::{LeaderElection, LeaderElectionConfig, LeaderElectionError};
