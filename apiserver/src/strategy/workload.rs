//! In progress.

use super::Strategy;

pub struct DeploymentStrategy;
impl Strategy for DeploymentStrategy {}

pub struct ReplicaSetStrategy;
impl Strategy for ReplicaSetStrategy {}

pub struct DaemonSetStrategy;
impl Strategy for DaemonSetStrategy {}

pub struct JobStrategy;
impl Strategy for JobStrategy {}
