//! Layers: each pairs its forward dispatches with its backward ones.

pub mod batchnorm;
pub mod clip;
pub mod conv;
pub mod conv_generic;
pub mod dense;
pub mod dropout;
pub mod gap;
pub mod input;
pub mod loss;
pub mod maxpool;
pub mod optim;
pub mod relu;
