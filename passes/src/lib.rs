//! bonsai's passes, one per file, registered in one table.
//!
//! Naming (house rule): CLI `prune-magnitude` = lit `prune-magnitude.mlir` = module
//! `prune_magnitude.rs` = type `PruneMagnitude`. `declare_passes!` is both the module list
//! and the registry, so the four forms cannot drift apart (a unit test checks them).

use bonsai::pass::{PassInfo, Registry};

macro_rules! declare_passes {
    ($($module:ident :: $ty:ident = $name:literal),* $(,)?) => {
        $(pub mod $module;)*

        /// The registry of every bonsai pass.
        pub fn registry() -> Registry {
            let mut r = Registry::default();
            $(r.register(PassInfo { name: $name, summary: $module::$ty::SUMMARY, factory: $module::$ty::create, grid: $module::$ty::GRID });)*
            r
        }

        /// (module, type, CLI name) of every pass, for the naming test.
        pub const NAMES: &[(&str, &str, &str)] = &[$((stringify!($module), stringify!($ty), $name)),*];
    };
}

mod common;
mod obs;

declare_passes! {
    lower_to_llvm::LowerToLlvm = "lower-to-llvm",
    prune_block::PruneBlock = "prune-block",
    prune_channels::PruneChannels = "prune-channels",
    prune_magnitude::PruneMagnitude = "prune-magnitude",
    prune_nm::PruneNm = "prune-nm",
    prune_sparsegpt::PruneSparsegpt = "prune-sparsegpt",
    prune_wanda::PruneWanda = "prune-wanda",
    quantize_activations::QuantizeActivations = "quantize-activations",
    quantize_weights::QuantizeWeights = "quantize-weights",
    refit::Refit = "refit",
    share_kmeans::ShareKmeans = "share-kmeans",
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kebab(camel: &str) -> String {
        let mut s = String::new();
        for (i, c) in camel.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                s.push('-');
            }
            s.push(c.to_ascii_lowercase());
        }
        s
    }

    /// One pass = one file = one lit test = one registry line, all with the same name.
    #[test]
    fn names_agree_in_all_four_forms() {
        let lit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lit-tests");
        for (module, ty, name) in NAMES {
            assert_eq!(module.replace('_', "-"), *name);
            assert_eq!(kebab(ty), *name);
            assert!(
                lit.join(format!("{name}.mlir")).exists(),
                "lit-tests/{name}.mlir missing"
            );
            assert!(registry().get(name).is_some());
        }
    }
}
