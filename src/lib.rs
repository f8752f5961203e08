//! gpu-train: trains convolutional networks on IDX image datasets with every forward and
//! backward pass in hand-written WGSL compute shaders, through wgpu.

pub mod augment;
pub mod autotune;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod curves;
pub mod data;
pub mod download;
pub mod error;
pub mod evaluate;
pub mod gpu;
pub mod idx;
pub mod image;
pub mod interrupt;
pub mod kernels;
pub mod layers;
pub mod loop_budget;
pub mod machine;
pub mod manual;
pub mod model;
pub mod model_spec;
pub mod network;
pub mod normalize;
pub mod preview;
pub mod profile;
pub mod progress;
pub mod report;
pub mod run;
pub mod rundir;
pub mod running_metrics;
pub mod schedule;
pub mod train;
