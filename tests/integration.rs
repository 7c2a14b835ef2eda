//! One integration-test binary (faster to link than one per file); every module runs the real
//! `grove` binary against real git repos in a hermetic temp workspace.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

mod agents;
mod bad_input;
mod commands;
mod compose;
mod concurrency;
mod copying;
mod crash;
mod doctor;
mod gate;
mod hostile;
mod isolation;
mod land;
mod matrix;
mod papercuts;
mod pool;
mod review;
mod rollback;
mod safety;
mod servers;
mod shell;
mod trust;
mod workflow;
