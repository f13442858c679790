//! Loading checkpoints: dtypes, shards, prefixes, and every kind of bad input.

use std::{collections::HashMap, fs, path::Path};

use burn::tensor::Tensor;
use burn_flex::Flex;
use dit_layers::{LoadError, Weights, linear, linear_from_rows};
use half::{bf16, f16};
use safetensors::{Dtype, serialize_to_file, tensor::TensorView};

type B = Flex;

/// Writes `tensors` (name, dtype, shape, little-endian bytes) to `path`.
fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    serialize_to_file(views, None, path).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

#[test]
fn loads_f32_f16_and_bf16_into_the_device_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let v = [1.5f32, -2.25, 0.125, 3.0];
    let half: Vec<u8> = v
        .iter()
        .flat_map(|x| f16::from_f32(*x).to_le_bytes())
        .collect();
    let brain: Vec<u8> = v
        .iter()
        .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
        .collect();
    write(
        &path,
        &[
            ("a", Dtype::F32, vec![2, 2], f32_bytes(&v)),
            ("b", Dtype::F16, vec![2, 2], half),
            ("c", Dtype::BF16, vec![2, 2], brain),
        ],
    );
    let w = Weights::open(&path).unwrap();
    let dev = Default::default();
    for key in ["a", "b", "c"] {
        let t: Tensor<B, 2> = w.tensor(key, [2, 2], &dev).unwrap();
        assert_eq!(values(t), v, "{key}");
    }
    assert!(w.unused().is_empty());
    w.check_all_used().unwrap();
}

#[test]
fn linear_takes_pytorch_layout_and_fused_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    // nn.Linear(2, 3): weight [3, 2], bias [3].
    let weight = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let bias = [0.5f32, -0.5, 1.0];
    write(
        &path,
        &[
            ("proj.weight", Dtype::F32, vec![3, 2], f32_bytes(&weight)),
            ("proj.bias", Dtype::F32, vec![3], f32_bytes(&bias)),
        ],
    );
    let w = Weights::open(&path).unwrap();
    let dev = Default::default();
    let x = Tensor::<B, 2>::from_floats([[1.0, -1.0]], &dev);
    let full = linear::<B>(&w.view("proj"), 2, 3, true, &dev).unwrap();
    assert_eq!(values(full.forward(x.clone())), vec![-0.5, -1.5, 0.0]);
    let rows = linear_from_rows::<B>(&w.view("proj"), 3, 1..3, 2, true, &dev).unwrap();
    assert_eq!(values(rows.forward(x.clone())), vec![-1.5, 0.0]);
    let no_bias = linear::<B>(&w.root().at("proj"), 2, 3, false, &dev).unwrap();
    assert_eq!(values(no_bias.forward(x)), vec![-1.0, -1.0, -1.0]);
}

#[test]
fn sharded_folder_with_index_and_prefix_stripping() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("m-1.safetensors"),
        &[(
            "model.diffusion_model.x",
            Dtype::F32,
            vec![1],
            f32_bytes(&[1.0]),
        )],
    );
    write(
        &dir.path().join("m-2.safetensors"),
        &[(
            "model.diffusion_model.y",
            Dtype::F32,
            vec![1],
            f32_bytes(&[2.0]),
        )],
    );
    fs::write(
        dir.path().join("m.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"model.diffusion_model.x": "m-1.safetensors", "model.diffusion_model.y": "m-2.safetensors"}}"#,
    )
    .unwrap();
    let w = Weights::open(dir.path())
        .unwrap()
        .strip_prefix("model.diffusion_model.");
    assert_eq!(w.keys(), vec!["x", "y"]);
    let dev = Default::default();
    assert_eq!(values(w.tensor::<B, 1>("y", [1], &dev).unwrap()), vec![2.0]);
    let err = w.check_all_used().unwrap_err();
    assert!(matches!(err, LoadError::Unused { count: 1, .. }), "{err}");
    assert!(err.to_string().contains("\"x\""), "{err}");

    fs::remove_file(dir.path().join("m-2.safetensors")).unwrap();
    let err = Weights::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("m-2.safetensors"), "{err}");
}

#[test]
fn bad_files_and_tensors_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    write(
        &path,
        &[
            ("t", Dtype::F32, vec![2, 3], f32_bytes(&[0.0; 6])),
            ("i", Dtype::I64, vec![1], vec![0; 8]),
        ],
    );
    let w = Weights::open(&path).unwrap();
    let dev = Default::default();

    let err = w.tensor::<B, 2>("t", [3, 2], &dev).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("\"t\"") && msg.contains("[2, 3]") && msg.contains("[3, 2]"),
        "{msg}"
    );
    let msg = w
        .tensor::<B, 1>("missing", [1], &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("\"missing\"") && msg.contains("w.safetensors"),
        "{msg}"
    );
    let msg = w.tensor::<B, 1>("i", [1], &dev).err().unwrap().to_string();
    assert!(msg.contains("\"i\"") && msg.contains("I64"), "{msg}");

    // Truncated: the header promises more bytes than the file holds.
    let bytes = fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let err = Weights::open(&cut).err().unwrap();
    assert!(
        matches!(err, LoadError::Corrupt { .. }) && err.to_string().contains("cut.safetensors"),
        "{err}"
    );
    // Garbage header.
    let junk = dir.path().join("junk.safetensors");
    fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!").unwrap();
    assert!(matches!(
        Weights::open(&junk).err().unwrap(),
        LoadError::Corrupt { .. }
    ));
    // Missing file, empty folder.
    let msg = Weights::open(&dir.path().join("nope.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("nope.safetensors"), "{msg}");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Weights::open(empty.path()).err().unwrap(),
        LoadError::NoWeights(_)
    ));
}

#[test]
fn a_tensor_in_two_files_is_an_error_naming_both_unless_an_index_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("diffusion_pytorch_model.safetensors");
    let stray = dir.path().join("zz_old.safetensors");
    write(
        &real,
        &[("proj_out.bias", Dtype::F32, vec![1], f32_bytes(&[1.0]))],
    );
    write(
        &stray,
        &[("proj_out.bias", Dtype::F32, vec![1], f32_bytes(&[9.0]))],
    );
    let err = Weights::open(dir.path()).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Duplicate { .. }), "{msg}");
    assert!(
        msg.contains("proj_out.bias")
            && msg.contains("diffusion_pytorch_model.safetensors")
            && msg.contains("zz_old.safetensors"),
        "{msg}"
    );
    // With a shard index only the files it lists are read.
    fs::write(
        dir.path()
            .join("diffusion_pytorch_model.safetensors.index.json"),
        r#"{"weight_map": {"proj_out.bias": "diffusion_pytorch_model.safetensors"}}"#,
    )
    .unwrap();
    let w = Weights::open(dir.path()).unwrap();
    let dev = Default::default();
    assert_eq!(
        values(w.tensor::<B, 1>("proj_out.bias", [1], &dev).unwrap()),
        vec![1.0]
    );
}

#[test]
fn nan_and_infinite_weights_are_errors_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let f16s = |v: &[f32]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| f16::from_f32(*x).to_le_bytes())
            .collect()
    };
    let bf16s = |v: &[f32]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
            .collect()
    };
    write(
        &path,
        &[
            ("ok", Dtype::F32, vec![3], f32_bytes(&[1.0, -65504.0, 3e38])),
            (
                "nan32",
                Dtype::F32,
                vec![3],
                f32_bytes(&[1.0, f32::NAN, 2.0]),
            ),
            (
                "inf16",
                Dtype::F16,
                vec![3],
                f16s(&[f32::INFINITY, 0.5, f32::NEG_INFINITY]),
            ),
            ("nanbf16", Dtype::BF16, vec![2], bf16s(&[f32::NAN, 1.0])),
            ("finebf16", Dtype::BF16, vec![2], bf16s(&[1e38, -1e-38])),
        ],
    );
    let w = Weights::open(&path).unwrap();
    let dev = Default::default();
    assert!(w.tensor::<B, 1>("ok", [3], &dev).is_ok());
    assert!(w.tensor::<B, 1>("finebf16", [2], &dev).is_ok());
    for (key, len, count) in [("nan32", 3, 1), ("inf16", 3, 2), ("nanbf16", 2, 1)] {
        let err = w.tensor::<B, 1>(key, [len], &dev).err().unwrap();
        let msg = err.to_string();
        assert!(
            matches!(&err, LoadError::NonFinite { count: c, .. } if *c == count),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("{key:?}")) && msg.contains("w.safetensors"),
            "{msg}"
        );
    }
}
