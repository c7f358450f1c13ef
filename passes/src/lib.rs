//! bonsai's compression passes, one per file, registered in one table.
//!
//! Naming (house rule): CLI `prune-magnitude` = lit `prune-magnitude.mlir` = module
//! `prune_magnitude.rs` = type `PruneMagnitude`. The pruning, sharing and quantisation passes
//! land here in their own issues.

use bonsai::pass::Registry;

/// The registry of every bonsai pass.
pub fn registry() -> Registry {
    Registry::default()
}
