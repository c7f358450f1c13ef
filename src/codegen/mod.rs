//! Code generation: CPU (JIT now, AOT next); GPU to come.

pub mod cpu;
pub mod runtime;
