//! `dit_layers::attention` and `attention_with_bias` against PyTorch's
//! `scaled_dot_product_attention` (fixtures/gen_attention.py), at fp32 parity.

use std::collections::HashMap;

use burn::tensor::{Bool, DType, FloatDType, Int, Tensor, TensorData};
use dicache_tests::{Cpu, assert_close, load_fixture, tensor};
use dit_layers::{attention, attention_with_bias};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn cases() -> HashMap<String, TensorData> {
    load_fixture("attention/cases.safetensors")
}

/// `q`, `k`, `v` of case `name`.
fn qkv(f: &HashMap<String, TensorData>, name: &str) -> [Tensor<Cpu, 4>; 3] {
    let dev = Default::default();
    ["q", "k", "v"].map(|part| tensor(f, &format!("{name}.{part}"), &dev))
}

/// The fixture's 0/1 mask of case `name` as booleans (true = ignore), expanded to the scores'
/// shape `[batch, heads, seq_q, seq_k]`.
fn mask(
    f: &HashMap<String, TensorData>,
    name: &str,
    q: &Tensor<Cpu, 4>,
    k: &Tensor<Cpu, 4>,
) -> Tensor<Cpu, 4, Bool> {
    let [b, h, sq, _] = q.dims();
    let sk = k.dims()[2];
    let ignore =
        Tensor::<Cpu, 4, Int>::from_data(f[&format!("{name}.mask")].clone(), &Default::default());
    ignore.equal_elem(1).expand([b, h, sq, sk])
}

fn check_unmasked(name: &str) {
    let f = cases();
    let [q, k, v] = qkv(&f, name);
    assert_close(
        attention(q, k, v, None),
        &f[&format!("{name}.out")],
        ATOL,
        RTOL,
        name,
    );
}

#[test]
fn one_key_tile() {
    check_unmasked("small");
}

#[test]
fn several_key_tiles_and_partial_blocks() {
    check_unmasked("tiles");
}

#[test]
fn odd_sizes_and_value_dim() {
    check_unmasked("odd");
}

#[test]
fn padded_keys_mask_across_tiles() {
    let f = cases();
    let [q, k, v] = qkv(&f, "padded_keys");
    let m = mask(&f, "padded_keys", &q, &k);
    assert_close(
        attention(q, k, v, Some(m)),
        &f["padded_keys.out"],
        ATOL,
        RTOL,
        "padded_keys",
    );
}

#[test]
fn per_query_mask() {
    let f = cases();
    let [q, k, v] = qkv(&f, "masked");
    let m = mask(&f, "masked", &q, &k);
    assert_close(
        attention(q, k, v, Some(m)),
        &f["masked.out"],
        ATOL,
        RTOL,
        "masked",
    );
}

#[test]
fn additive_bias_and_scale() {
    let f = cases();
    let [q, k, v] = qkv(&f, "bias");
    let bias = tensor(&f, "bias.bias", &Default::default());
    let scale = f["bias.scale"]
        .iter::<f32>()
        .next()
        .expect("bias.scale holds one value") as f64;
    let out = attention_with_bias(q, k, v, None, Some(bias), scale);
    assert_close(out, &f["bias.out"], ATOL, RTOL, "bias");
}

/// Models build `q` as `[batch, seq, heads, dim]` and swap the middle axes: a strided view that
/// must give the same result as a contiguous tensor.
#[test]
fn strided_inputs() {
    let f = cases();
    let [q, k, v] = qkv(&f, "odd").map(|t| {
        let seq_major =
            Tensor::<Cpu, 4>::from_data(t.swap_dims(1, 2).into_data(), &Default::default());
        seq_major.swap_dims(1, 2)
    });
    assert_close(
        attention(q, k, v, None),
        &f["odd.out"],
        ATOL,
        RTOL,
        "odd, strided",
    );
}

/// f64 tensors take Burn's own kernel; both paths agree with the reference.
#[test]
fn other_dtypes_use_burns_kernel() {
    let f = cases();
    let [q, k, v] = qkv(&f, "tiles").map(|t| t.cast(FloatDType::F64));
    assert_eq!(q.dtype(), DType::F64);
    let out = attention(q, k, v, None);
    assert_eq!(out.dtype(), DType::F64);
    assert_close(
        out.cast(FloatDType::F32),
        &f["tiles.out"],
        ATOL,
        RTOL,
        "tiles, f64",
    );
}

/// A query whose keys are all ignored gets zeros, not NaN (both kernels agree on this).
#[test]
fn fully_masked_query_is_zero() {
    let f = cases();
    let [q, k, v] = qkv(&f, "small");
    let [b, h, sq, _] = q.dims();
    let sk = k.dims()[2];
    let mut ignore = vec![false; b * h * sq * sk];
    ignore[..sk].fill(true);
    let m = Tensor::<Cpu, 4, Bool>::from_data(
        TensorData::new(ignore, [b, h, sq, sk]),
        &Default::default(),
    );
    let out = attention(q, k, v, Some(m))
        .into_data()
        .to_vec::<f32>()
        .expect("f32 output");
    let dv = f["small.v"].shape[3];
    assert!(out[..dv].iter().all(|&x| x == 0.0), "{:?}", &out[..dv]);
    assert!(out[dv..].iter().all(|x| x.is_finite()));
}
