//! Golden IR of small models (reviewed like code). Numbers are checked elsewhere.

use bonsai::ir::Mlir;
use bonsai::session::load_bound;
use std::collections::HashMap;

fn import(model: &str, shapes: &[(&str, Vec<usize>)]) -> String {
    let s: HashMap<String, Vec<usize>> = shapes
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let g = load_bound(&super::root().join(model), &s).expect("load");
    let text = bonsai::ir::lower::lower(&g).expect("lower");
    let mlir = Mlir::new();
    let m = mlir.parse(&text).expect("parse + verify");
    m.as_operation().to_string()
}

#[test]
fn shape_subgraph_folds_to_one_reshape() {
    let ir = import("testdata/small/shape_fold.onnx", &[]);
    assert!(
        !ir.contains("linalg.generic"),
        "Shape/Gather/Concat must fold away"
    );
    insta::assert_snapshot!(ir);
}

#[test]
fn tiny_cnn_imports() {
    let ir = import("testdata/small/tiny_cnn.onnx", &[("x", vec![1, 1, 8, 8])]);
    insta::assert_snapshot!(ir);
}
