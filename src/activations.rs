//! Activation functions by their Keras names.

use crate::ops::unary::{self, Unary};
use crate::Result;
use candle_core::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Softmax,
    Elementwise(Unary),
}

impl Activation {
    /// Keras's names; `None`/`null` means linear, as in Keras.
    pub fn parse(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("linear") {
            "linear" | "" => Activation::Linear,
            "softmax" => Activation::Softmax,
            "relu" => Activation::Elementwise(Unary::Relu),
            "sigmoid" => Activation::Elementwise(Unary::Sigmoid),
            "tanh" => Activation::Elementwise(Unary::Tanh),
            "elu" => Activation::Elementwise(Unary::Elu),
            "selu" => Activation::Elementwise(Unary::Selu),
            "softplus" => Activation::Elementwise(Unary::Softplus),
            other => {
                return crate::value_err!(
                    "Could not interpret activation function identifier: '{other}'. Known: linear, relu, \
                     softmax, sigmoid, tanh, elu, selu, softplus"
                )
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Softmax => "softmax",
            Activation::Elementwise(u) => match u {
                Unary::Relu => "relu",
                Unary::Sigmoid => "sigmoid",
                Unary::Tanh => "tanh",
                Unary::Elu => "elu",
                Unary::Selu => "selu",
                Unary::Softplus => "softplus",
            },
        }
    }

    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Linear => x.clone(),
            Activation::Softmax => unary::softmax(x)?,
            Activation::Elementwise(u) => unary::unary(x, u)?,
        })
    }

    /// The gradient with respect to the activation's input, from its output `y` and the gradient
    /// `grad` with respect to that output (every activation here is determined by its output).
    pub fn backward(self, y: &Tensor, grad: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Linear => grad.clone(),
            Activation::Softmax => unary::softmax_backward(y, grad)?,
            Activation::Elementwise(u) => unary::unary_backward(y, grad, u)?,
        })
    }
}
