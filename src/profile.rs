//! Per-kernel GPU times from timestamp queries.
//!
//! With TIMESTAMP_QUERY_INSIDE_PASSES, a timestamp is written between consecutive dispatches
//! of one pass (what training records); without it, each dispatch gets its own pass with
//! begin/end timestamps, which adds the cost of a pass per kernel.

use crate::gpu::{Gpu, Result};
use crate::kernels::Dispatch;

#[derive(Debug, Clone)]
pub struct KernelTime {
    pub layer: String,
    pub kernel: &'static str,
    pub calls_per_step: usize,
    pub ms_per_step: f64,
    pub flops_per_step: u64,
    /// Bytes read and written at least (memory-bound kernels; 0 where not counted).
    pub bytes_per_step: u64,
}

impl KernelTime {
    pub fn gflops(&self) -> Option<f64> {
        (self.flops_per_step > 0 && self.ms_per_step > 0.0)
            .then(|| self.flops_per_step as f64 / (self.ms_per_step * 1e6))
    }
    /// Memory throughput: the bytes the kernel must move over its time.
    pub fn gbps(&self) -> Option<f64> {
        (self.bytes_per_step > 0 && self.ms_per_step > 0.0)
            .then(|| self.bytes_per_step as f64 / (self.ms_per_step * 1e6))
    }
}

#[derive(Debug, Clone)]
pub struct KernelProfile {
    /// "inside passes" or "per pass".
    pub method: &'static str,
    pub kernels: Vec<KernelTime>,
}

impl KernelProfile {
    pub fn total_ms(&self) -> f64 {
        self.kernels.iter().map(|k| k.ms_per_step).sum()
    }
}

/// Times `steps` repetitions of `dispatches` (step slot 0); None when the adapter has no
/// timestamp queries.
pub fn profile(gpu: &Gpu, dispatches: &[Dispatch], steps: usize) -> Result<Option<KernelProfile>> {
    let features = gpu.device.features();
    if !features.contains(wgpu::Features::TIMESTAMP_QUERY) || dispatches.is_empty() {
        return Ok(None);
    }
    let inside = features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
    let n = dispatches.len();
    let per_step = if inside { n } else { 2 * n };
    let steps = steps.clamp(1, (wgpu::QUERY_SET_MAX_QUERIES as usize - 1) / per_step);
    let count = (steps * per_step + usize::from(inside)) as u32;
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("kernel timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("resolved timestamps"),
        size: count as u64 * 8,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    if inside {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.write_timestamp(&queries, 0);
        for s in 0..steps {
            for (i, d) in dispatches.iter().enumerate() {
                d.record(&mut pass, 0);
                pass.write_timestamp(&queries, (s * n + i + 1) as u32);
            }
        }
    } else {
        for s in 0..steps {
            for (i, d) in dispatches.iter().enumerate() {
                let at = (2 * (s * n + i)) as u32;
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(d.name),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &queries,
                        beginning_of_pass_write_index: Some(at),
                        end_of_pass_write_index: Some(at + 1),
                    }),
                });
                d.record(&mut pass, 0);
            }
        }
    }
    encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
    gpu.queue.submit([encoder.finish()]);
    let words: Vec<u32> = gpu.read_words(&resolved, 0, 2 * count as usize)?;
    let ticks: Vec<u64> = words.chunks_exact(2).map(|w| w[0] as u64 | ((w[1] as u64) << 32)).collect();
    let ns_per_tick = gpu.queue.get_timestamp_period() as f64;
    let duration_ms = |s: usize, i: usize| -> f64 {
        let (a, b) = if inside { (s * n + i, s * n + i + 1) } else { (2 * (s * n + i), 2 * (s * n + i) + 1) };
        ticks[b].saturating_sub(ticks[a]) as f64 * ns_per_tick / 1e6
    };
    // One row per (layer, kernel), in order of first launch.
    let mut kernels: Vec<KernelTime> = Vec::new();
    for (i, d) in dispatches.iter().enumerate() {
        let ms: f64 = (0..steps).map(|s| duration_ms(s, i)).sum::<f64>() / steps as f64;
        match kernels.iter_mut().find(|k| k.layer == d.layer && k.kernel == d.name) {
            Some(k) => {
                k.calls_per_step += 1;
                k.ms_per_step += ms;
                k.flops_per_step += d.flops;
                k.bytes_per_step += d.bytes;
            }
            None => kernels.push(KernelTime {
                layer: d.layer.clone(),
                kernel: d.name,
                calls_per_step: 1,
                ms_per_step: ms,
                flops_per_step: d.flops,
                bytes_per_step: d.bytes,
            }),
        }
    }
    Ok(Some(KernelProfile { method: if inside { "inside passes" } else { "per pass" }, kernels }))
}

/// The kernel table, with each kernel's share of `step_ms` (the measured step time).
pub fn format_table(profile: &KernelProfile, step_ms: f64) -> String {
    // layer names come from the model ("layer 4 (c64,relu,pool) backward"): size the column
    let lw = profile.kernels.iter().map(|k| k.layer.len()).max().unwrap_or(0).max(5);
    let mut out = format!(
        "{:<lw$} {:<24} {:>5} {:>10} {:>7} {:>9} {:>8} {:>7}\n",
        "layer", "kernel", "calls", "ms/step", "share", "MFLOP", "GFLOP/s", "GB/s"
    );
    for k in &profile.kernels {
        let gflops = k.gflops().map_or("-".to_string(), |g| format!("{g:.1}"));
        let gbps = k.gbps().map_or("-".to_string(), |g| format!("{g:.2}"));
        let mflop =
            if k.flops_per_step > 0 { format!("{:.1}", k.flops_per_step as f64 / 1e6) } else { "-".into() };
        out += &format!(
            "{:<lw$} {:<24} {:>5} {:>10.3} {:>6.1}% {:>9} {:>8} {:>7}\n",
            k.layer,
            k.kernel,
            k.calls_per_step,
            k.ms_per_step,
            100.0 * k.ms_per_step / step_ms,
            mflop,
            gflops,
            gbps
        );
    }
    let total = profile.total_ms();
    out += &format!(
        "kernels sum to {total:.2} ms per step, {:.1}% of the measured {step_ms:.2} ms (timestamps {})\n",
        100.0 * total / step_ms,
        profile.method
    );
    out
}
