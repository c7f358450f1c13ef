//! Bad input gets a clear error naming the file/node/op/input, a non-zero exit and no output.

use super::{bonsai, root, s, tempdir};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tiny_inputs(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("in.npz");
    let x = bonsai::graph::Tensor::f32(
        vec![2, 1, 8, 8],
        (0..128).map(|i| (i as f32 * 0.37).sin()).collect(),
    );
    bonsai::npz::write(&p, &[("x".into(), x)]).unwrap();
    p
}

#[test]
fn truncated_model_is_rejected_and_nothing_written() {
    let d = tempdir("trunc");
    let bytes = std::fs::read(root().join("testdata/small/tiny_cnn.onnx")).unwrap();
    let m = d.join("trunc.onnx");
    std::fs::write(&m, &bytes[..bytes.len() / 2]).unwrap();
    let inp = tiny_inputs(&d);
    let out = d.join("out.npz");
    let o = bonsai(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        inp.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("trunc.onnx") && e.contains("not a valid ONNX model"),
        "{e}"
    );
    assert!(!out.exists(), "no partial output");
}

#[test]
fn unknown_op_names_node_op_and_opset() {
    let o = bonsai(&["import", "testdata/small/unknown_op.onnx"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("NonMaxSuppression") && e.contains("opset 13") && e.contains("unknown_op.onnx"),
        "{e}"
    );
}

#[test]
fn wrong_input_name_and_shape_are_named() {
    let d = tempdir("names");
    let p = d.join("bad.npz");
    let x = bonsai::graph::Tensor::f32(vec![2, 1, 8, 8], vec![0.0; 128]);
    bonsai::npz::write(&p, &[("y".into(), x)]).unwrap();
    let o = bonsai(&[
        "run",
        "testdata/small/tiny_cnn.onnx",
        "--input",
        p.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("input 'y'"), "{}", stderr(&o));

    let x = bonsai::graph::Tensor::f32(vec![2, 3, 8, 8], vec![0.0; 384]);
    bonsai::npz::write(&p, &[("x".into(), x)]).unwrap();
    let o = bonsai(&[
        "run",
        "testdata/small/tiny_cnn.onnx",
        "--input",
        p.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("input 'x'") && stderr(&o).contains("dim 1 is 3"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unbound_symbolic_dim_and_bad_shape_option() {
    let o = bonsai(&["import", "testdata/small/tiny_cnn.onnx"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("symbolic ('N')") && stderr(&o).contains("--shape x="),
        "{}",
        stderr(&o)
    );
    let o = bonsai(&[
        "import",
        "testdata/small/tiny_cnn.onnx",
        "--shape",
        "x=1xAx8x8",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("option --shape"), "{}", stderr(&o));
    for spec in ["8x", "conv:2x6x6:3x3", "conv:2x6x6"] {
        let o = bonsai(&["bench", "--kernels", spec, "--no-ort"]);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("option --kernels") && stderr(&o).contains(spec),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn symbolic_dims_taken_as_one_are_named_when_inference_fails() {
    // dyn_pool: x [N, 3, H, W] into a 2x2 MaxPool. Without data or --shape, compress binds
    // H and W to 1, where the window does not fit: the error names the guessed input.
    let d = tempdir("dynpool");
    let out = d.join("out.onnx");
    let model = root().join("testdata/small/dyn_pool.onnx");
    let compress = |extra: &[&str]| {
        let mut args = vec![
            "compress",
            s(&model),
            "-o",
            s(&out),
            "--passes",
            "prune-magnitude{sparsity=0.5}",
        ];
        args.extend_from_slice(extra);
        bonsai(&args)
    };
    let o = compress(&[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("MaxPool")
            && e.contains("'x' [N, 3, H, W] were taken as 1")
            && e.contains("--shape"),
        "{e}"
    );
    assert!(!out.exists());
    let o = compress(&["--shape", "x=1x3x6x6"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn never_overwrites_an_input() {
    let d = tempdir("overwrite");
    let inp = tiny_inputs(&d);
    let before = std::fs::read(&inp).unwrap();
    let o = bonsai(&[
        "run",
        "testdata/small/tiny_cnn.onnx",
        "--input",
        inp.to_str().unwrap(),
        "-o",
        inp.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&inp).unwrap(), before);
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    use onnx_protobuf::{Message, ModelProto, StringStringEntryProto};
    let d = tempdir("extdata");
    let bytes = std::fs::read(root().join("testdata/small/tiny_cnn.onnx")).unwrap();
    let mut m = ModelProto::parse_from_bytes(&bytes).unwrap();
    let init = &mut m.graph.as_mut().unwrap().initializer[0];
    init.raw_data.clear();
    init.data_location = protobuf::EnumOrUnknown::from_i32(1);
    let mut kv = StringStringEntryProto::new();
    kv.key = "location".into();
    kv.value = "../../etc/passwd".into();
    init.external_data.push(kv);
    let p = d.join("ext.onnx");
    std::fs::write(&p, m.write_to_bytes().unwrap()).unwrap();
    let o = bonsai(&["import", p.to_str().unwrap(), "--shape", "x=1x1x8x8"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("outside the model's folder"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_is_deterministic_and_matches_onnxruntime() {
    let d = tempdir("tiny");
    let inp = tiny_inputs(&d);
    let (a, b) = (d.join("a.npz"), d.join("b.npz"));
    for out in [&a, &b] {
        let o = bonsai(&[
            "run",
            "testdata/small/tiny_cnn.onnx",
            "--input",
            inp.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "same inputs, same bytes"
    );
    let err = super::models::max_err_vs_ort(&root().join("testdata/small/tiny_cnn.onnx"), &inp, &a);
    assert!(err.iter().all(|(_, ok, _)| *ok), "{err:?}");
}
