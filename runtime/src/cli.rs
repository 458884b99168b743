//! `skiff runtime …`.
