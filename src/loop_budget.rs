//! The per-invocation loop budget: how many loop iterations one shader invocation may run
//! on this adapter, measured once when the device opens, and the check that every recorded
//! dispatch stays within it.
//!
//! llvmpipe (lavapipe) counts the iterations of all of an invocation's loops together and
//! stops every loop once 65,535 have run, reporting nothing; the results are then silently
//! wrong. Each dispatch therefore carries a worst-case count of its loop iterations, derived
//! from its shape by the layer that builds it (`LoopBound`), and the model refuses to run a
//! step whose dispatch exceeds the budget. Layers split their work (more batch chunks,
//! split-K) so that the sizes a user may choose stay inside it.
//!
//! Counting follows the limiter: a loop that runs its body n times passes its back edge
//! n + 1 times (the last pass finds every lane done). Loops with a constant trip count are
//! counted too, whether or not the compiler unrolls them, so the counts are upper bounds.

use crate::gpu::{Gpu, Result};
use crate::kernels::Dispatch;

pub const PROBE_WGSL: &str = include_str!("../shaders/loop_probe.wgsl");

/// The probe's length: adapters without a limiter report this as their budget, and the
/// layers plan their chunks and slices within it as they do within llvmpipe's.
pub const PROBE_LIMIT: u32 = 1 << 22;
/// The probe's LCG starts at PROBE_SEED; reaching PROBE_STOP would end its loop early,
/// which within PROBE_LIMIT steps it never does (a test replays it), so a probe that
/// stops short was stopped by the driver.
pub const PROBE_SEED: u32 = 12_345;
pub const PROBE_STOP: u32 = 0xdead_beef;

/// Back-edge passes of a loop whose body runs `n` times.
pub const fn loop_ticks(n: u64) -> u64 {
    n + 1
}

/// A dispatch's worst-case loop iterations per invocation and the size that drives them
/// ("K = 3136", "256 classes"), for the error that names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopBound {
    pub ticks: u64,
    pub size: String,
}

impl LoopBound {
    pub fn new(ticks: u64, size: impl Into<String>) -> LoopBound {
        LoopBound { ticks, size: size.into() }
    }

    /// A kernel without loops.
    pub fn none() -> LoopBound {
        LoopBound { ticks: 0, size: "no loops".into() }
    }
}

/// Runs the probe kernel once: the iterations one invocation completed.
pub fn measure(gpu: &Gpu) -> Result<u64> {
    let module = crate::gpu::shader(gpu, "loop_probe.wgsl", PROBE_WGSL);
    let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("loop_probe"),
        layout: None,
        module: &module,
        entry_point: Some("loop_probe"),
        compilation_options: Default::default(),
        cache: None,
    });
    let params = gpu.uniform_init("loop probe params", &[PROBE_LIMIT, PROBE_SEED, PROBE_STOP, 0]);
    let out = gpu.storage("loop probe out", 2)?;
    let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("loop_probe"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: out.as_entire_binding() },
        ],
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    gpu.queue.submit([encoder.finish()]);
    let got = gpu.read_words::<u32>(&out, 0, 1).map_err(|e| format!("measuring the loop budget: {e}"))?[0];
    if got == 0 || got > PROBE_LIMIT {
        return Err(format!(
            "measuring the loop budget: the probe reported {got} iterations of {PROBE_LIMIT}"
        ));
    }
    Ok(got as u64)
}

/// Refuses a step whose dispatches would exceed the adapter's loop budget, naming the
/// kernel, its layer and the size that drives its loops.
pub fn check(gpu: &Gpu, dispatches: &[Dispatch]) -> Result<()> {
    for d in dispatches {
        let Some(bound) = &d.loops else {
            return Err(format!("internal error: kernel {} ({}) has no loop bound", d.name, d.layer));
        };
        if bound.ticks > gpu.loop_budget {
            return Err(format!(
                "kernel {} ({}) would run up to {} loop iterations per invocation at {}, over this adapter's \
                 per-invocation loop budget of {} (beyond it the driver stops loops silently and results \
                 would be wrong); use a smaller size for that layer",
                d.name,
                if d.layer.is_empty() { "unnamed layer" } else { &d.layer },
                bound.ticks,
                bound.size,
                gpu.loop_budget
            ));
        }
    }
    Ok(())
}
