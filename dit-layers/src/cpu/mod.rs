//! Kernels for Burn's Flex CPU backend (feature `flex`), used where Flex's own kernels leave
//! cores idle or call scalar libm functions: attention (one thread in Flex) and the tanh GELU
//! (scalar `powf` and `tanh` in Flex). The public functions stay generic: they take these paths
//! after a run-time check that the backend is Flex and the tensors are f32, and use Burn's
//! operations (the backend's fused kernels on GPUs) otherwise.

pub mod attention;
pub mod gelu;
mod rows;

use std::any::{Any, TypeId};

use burn::tensor::{DType, Tensor, TensorPrimitive, backend::Backend};
use burn_flex::{Flex, FlexTensor};

/// Whether `t` is an f32 tensor of the Flex backend.
fn is_flex_f32<B: Backend, const D: usize>(t: &Tensor<B, D>) -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>() && t.dtype() == DType::F32
}

/// The Flex tensor inside `t`; only called where `B` is `Flex`.
fn to_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    cast::<B::FloatTensorPrimitive, FlexTensor>(t.into_primitive().tensor())
}

/// `t` as a tensor of `B`; only called where `B` is `Flex`.
fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let t = cast::<FlexTensor, B::FloatTensorPrimitive>(t);
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Moves `value` into type `T`; only called where `A` and `T` are the same type (`B` is Flex).
fn cast<A: 'static, T: 'static>(value: A) -> T {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
        .expect("the Flex backend's tensor primitive is FlexTensor")
}
