//! In progress.

use super::Strategy;

pub struct ConfigMapStrategy;
impl Strategy for ConfigMapStrategy {}

pub struct SecretStrategy;
impl Strategy for SecretStrategy {}
