//! Code generation: CPU (JIT, and AOT shared libraries); GPU to come.

pub mod aot;
pub mod cpu;
pub mod runtime;
