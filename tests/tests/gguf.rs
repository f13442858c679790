//! GGUF checkpoints (fixtures from `fixtures/gen_gguf.py`): every ggml type the loader reads
//! decoded bit for bit as the `gguf` package decodes it; shapes (ggml's reversed order, 5-D
//! patch embeddings, rows flattened by ComfyUI-GGUF); and the errors of damaged, unsupported and
//! mismatched files. The three transformers' GGUF files are compared with diffusers in flux.rs,
//! wan.rs and hunyuan.rs.

use std::fs;

use burn::tensor::{Tensor, TensorData};
use dicache_tests::{Cpu, Scratch, fixture, load_fixture};
use dit_layers::{DiffusionTransformer, Linear, LoadError, QuantizedLinear, Weights};
use models_wan::WanTransformer;

/// `types.gguf` copied into `scratch` with `change` applied to its bytes.
fn damaged(scratch: &Scratch, change: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut bytes = fs::read(fixture("gguf/types.gguf")).unwrap();
    change(&mut bytes);
    let path = scratch.path().join("damaged.gguf");
    fs::write(&path, bytes).unwrap();
    path
}

/// Where the type id of tensor `name` sits in a GGUF file: after the name, the rank and the
/// rank's dimensions.
fn type_id_offset(bytes: &[u8], name: &str) -> usize {
    let mut entry = (name.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(entry.len())
        .position(|w| w == entry)
        .expect("the tensor is listed")
        + entry.len();
    let rank = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    at + 4 + 8 * rank
}

/// Where the data of tensor `name` starts in a GGUF file listing the tensors `names`: the data
/// section follows the last tensor entry (type id, then a u64 offset), aligned to 32 bytes.
fn data_offset(bytes: &[u8], name: &str, names: &[String]) -> usize {
    let header_end = names
        .iter()
        .map(|n| type_id_offset(bytes, n) + 4 + 8)
        .max()
        .unwrap();
    let at = type_id_offset(bytes, name) + 4;
    let offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    header_end.div_ceil(32) * 32 + offset
}

#[test]
fn every_type_decodes_as_the_gguf_package_does() {
    let weights = Weights::open(&fixture("gguf/types.gguf")).unwrap();
    let expected = load_fixture("gguf/types.safetensors");
    assert_eq!(weights.keys().len(), expected.len());
    let mut types = Vec::new();
    for (name, want) in &expected {
        let got = weights
            .data(name, want.shape.as_slice())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Vec<f32> = got.convert::<f32>().to_vec().unwrap();
        let want: Vec<f32> = want.to_vec().unwrap();
        let stored = weights.stored_type(name).unwrap();
        let differ = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ,
            0,
            "{name} ({stored}): {differ} of {} values differ",
            want.len()
        );
        types.push(stored);
    }
    types.sort();
    types.dedup();
    assert_eq!(
        types.join(" "),
        "BF16 F16 F32 Q2_K Q3_K Q4_0 Q4_1 Q4_K Q5_0 Q5_1 Q5_K Q6_K Q8_0"
    );
}

#[test]
fn shapes_are_read_outermost_first() {
    let weights = Weights::open(&fixture("gguf/types.gguf")).unwrap();
    assert_eq!(weights.shape("rank3.Q8_0").unwrap(), [2, 3, 64]);
    assert_eq!(weights.shape("rank5.F32").unwrap(), [4, 3, 1, 2, 2]);
    // Stored as rows of 256, restored from comfy.gguf.orig_shape.
    assert_eq!(weights.shape("flattened.Q4_0").unwrap(), [6, 40, 32]);
    let err = weights.data("rank3.Q8_0", &[6, 64]).unwrap_err();
    assert!(matches!(err, LoadError::Shape { .. }), "{err}");
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    let scratch = Scratch::new("gguf-truncated");
    let full = fs::read(fixture("gguf/types.gguf")).unwrap().len();
    // Inside the tensor data, and inside the header.
    for len in [full - 100, 200] {
        let path = damaged(&scratch, |bytes| bytes.truncate(len));
        let err = Weights::open(&path).err().expect("a truncated file fails");
        let msg = err.to_string();
        assert!(
            matches!(err, LoadError::Corrupt { format: "GGUF", .. })
                && msg.contains("damaged.gguf"),
            "{msg}"
        );
    }
}

#[test]
fn damaged_counts_fail_before_allocating() {
    let scratch = Scratch::new("gguf-counts");
    // The tensor count (bytes 8..16) set to 2^60.
    let path = damaged(&scratch, |bytes| {
        bytes[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes())
    });
    let msg = Weights::open(&path).err().unwrap().to_string();
    assert!(
        msg.contains("tensor count") && msg.contains("damaged.gguf"),
        "{msg}"
    );
    // Not GGUF version 2 or 3.
    let path = damaged(&scratch, |bytes| {
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes())
    });
    let msg = Weights::open(&path).err().unwrap().to_string();
    assert!(msg.contains("version 1"), "{msg}");
}

#[test]
fn unsupported_type_is_an_error_naming_tensor_and_type() {
    let scratch = Scratch::new("gguf-unsupported");
    // t.F32 relabelled IQ4_NL (ggml type 20, blocks of 32 values as 18 bytes: the data fits).
    let path = damaged(&scratch, |bytes| {
        let at = type_id_offset(bytes, "t.F32");
        bytes[at..at + 4].copy_from_slice(&20u32.to_le_bytes());
    });
    let err = Weights::open(&path).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Quantization { .. }), "{msg}");
    assert!(
        msg.contains("t.F32") && msg.contains("IQ4_NL") && msg.contains("Q4_K"),
        "{msg}"
    );
}

/// The ggml block types of `types.gguf` (its `t.<TYPE>` tensors, 2 x 512).
const BLOCK_TYPES: [&str; 10] = [
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
];

#[test]
fn quantized_matrices_decode_and_multiply_as_the_gguf_package_decodes() {
    let weights = Weights::open(&fixture("gguf/types.gguf")).unwrap();
    let expected = load_fixture("gguf/types.safetensors");
    for float in ["t.F32", "t.F16", "t.BF16"] {
        assert!(
            weights.quantized(float, [2, 512]).unwrap().is_none(),
            "{float}"
        );
    }
    let device = Default::default();
    // x = [e_0; e_511; ones]: the layer's outputs are W's first and last columns and row sums.
    let mut x = vec![0f32; 3 * 512];
    x[0] = 1.0;
    x[512 + 511] = 1.0;
    x[1024..].fill(1.0);
    let x = Tensor::<Cpu, 2>::from_data(TensorData::new(x, [3, 512]), &device);
    for kind in BLOCK_TYPES {
        let name = format!("t.{kind}");
        let matrix = weights.quantized(&name, [2, 512]).unwrap().expect(&name);
        assert_eq!(
            (matrix.type_name().as_str(), matrix.shape()),
            (kind, [2, 512])
        );
        let want: Vec<f32> = expected[&name].to_vec().unwrap();
        assert_eq!(matrix.dequantize(), want, "{name} decodes bit for bit");

        let layer = Linear::<Cpu>::Quantized(QuantizedLinear {
            weight: matrix,
            bias: None,
        });
        let row_sum = |r: usize| want[r * 512..(r + 1) * 512].iter().sum::<f32>();
        let expect = |rows: [usize; 2]| {
            let [a, b] = rows.map(|r| [want[r * 512], want[r * 512 + 511], row_sum(r)]);
            vec![a[0], b[0], a[1], b[1], a[2], b[2]]
        };
        // Sums of 512 values in another order: rounding relative to the sum of magnitudes.
        let magnitude: f32 = want.iter().map(|v| v.abs()).sum();
        let close = |got: Vec<f32>, want: Vec<f32>, what: &str| {
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-6 * magnitude,
                    "{name} {what}: {got:?} {want:?}"
                );
            }
        };
        let got: Vec<f32> = layer.forward(x.clone()).into_data().to_vec().unwrap();
        close(got, expect([0, 1]), "forward");
        let swapped = layer.reorder_outputs(&[1, 0]);
        let got: Vec<f32> = swapped.forward(x.clone()).into_data().to_vec().unwrap();
        close(got, expect([1, 0]), "outputs reordered");
    }
}

#[test]
fn a_non_finite_scale_of_any_block_type_is_an_error_naming_the_tensor() {
    let scratch = Scratch::new("gguf-non-finite-types");
    let names: Vec<String> = load_fixture("gguf/types.safetensors").into_keys().collect();
    // Where each type's blocks keep their f16 scales (ggml's block layouts), and the size of
    // a block: the second block's scale is damaged.
    let scales: [(&str, &[usize], usize); 10] = [
        ("Q4_0", &[0], 18),
        ("Q4_1", &[0, 2], 20),
        ("Q5_0", &[0], 22),
        ("Q5_1", &[0, 2], 24),
        ("Q8_0", &[0], 34),
        ("Q2_K", &[80, 82], 84),
        ("Q3_K", &[108], 110),
        ("Q4_K", &[0, 2], 144),
        ("Q5_K", &[0, 2], 176),
        ("Q6_K", &[208], 210),
    ];
    for (kind, offsets, block) in scales {
        for &offset in offsets {
            let name = format!("t.{kind}");
            let path = damaged(&scratch, |bytes| {
                let at = data_offset(bytes, &name, &names) + block + offset;
                bytes[at..at + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
            });
            let weights = Weights::open(&path).unwrap();
            let per_block = if kind.ends_with("_K") { 256 } else { 32 };
            for err in [
                weights.quantized(&name, [2, 512]).unwrap_err(),
                weights.data(&name, &[2, 512]).unwrap_err(),
            ] {
                let msg = err.to_string();
                assert!(
                    matches!(err, LoadError::NonFinite { count, .. } if count == per_block),
                    "{kind} scale at {offset}: {msg}"
                );
                assert!(msg.contains(&name) && msg.contains("damaged.gguf"), "{msg}");
            }
        }
    }
}

#[test]
fn non_finite_scales_are_an_error_naming_the_tensor() {
    let scratch = Scratch::new("gguf-non-finite");
    let names: Vec<String> = load_fixture("gguf/types.safetensors").into_keys().collect();
    // The f16 scale of t.Q8_0's first block (its first two bytes) set to infinity.
    let path = damaged(&scratch, |bytes| {
        let at = data_offset(bytes, "t.Q8_0", &names);
        bytes[at..at + 2].copy_from_slice(&0x7c00u16.to_le_bytes());
    });
    let weights = Weights::open(&path).unwrap();
    let err = weights.data("t.Q8_0", &[2, 512]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::NonFinite { .. }), "{msg}");
    assert!(
        msg.contains("t.Q8_0") && msg.contains("damaged.gguf"),
        "{msg}"
    );
}

#[test]
fn a_file_of_another_architecture_is_an_error() {
    // The FLUX.1 file loaded as WAN.
    let err = WanTransformer::<Cpu>::load_original(
        &fixture("gguf/flux-Q8_0.gguf"),
        Some(2),
        &Default::default(),
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Architecture { .. }), "{msg}");
    assert!(
        msg.contains("flux-Q8_0.gguf") && msg.contains("\"flux\"") && msg.contains("\"wan\""),
        "{msg}"
    );
}
