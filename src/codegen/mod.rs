//! Code generation: CPU (JIT, and AOT shared libraries) and GPU (PTX for sm_90).

pub mod aot;
pub mod cpu;
pub mod gpu;
pub mod gpu_math;
pub mod runtime;
