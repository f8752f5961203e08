//! Every compute pipeline, compiled once per device, and the recorded form of a kernel
//! launch (`Dispatch`) that layers build once and replay every step.

use crate::gpu::{Gpu, Kernel, Result, shader};
use crate::loop_budget::LoopBound;

pub const CONV_WGSL: &str = include_str!("../shaders/conv.wgsl");
pub const CONV_ACCUMULATE_WGSL: &str = include_str!("../shaders/conv_accumulate.wgsl");
pub const CONV_ACCUMULATE_SUBGROUP_WGSL: &str = include_str!("../shaders/conv_accumulate_subgroup.wgsl");
pub const CONV_TILED_WGSL: &str = include_str!("../shaders/conv_tiled.wgsl");
pub const CONV_WGRAD_WGSL: &str = include_str!("../shaders/conv_wgrad.wgsl");
pub const CONV_WGRAD_GRADS_WGSL: &str = include_str!("../shaders/conv_wgrad_grads.wgsl");
pub const CONV_WGRAD_GRADS_SUBGROUP_WGSL: &str = include_str!("../shaders/conv_wgrad_grads_subgroup.wgsl");
pub const POOL_WGSL: &str = include_str!("../shaders/conv_pool.wgsl");
pub const DENSE_WGSL: &str = include_str!("../shaders/dense.wgsl");
pub const DENSE_ROWS_WGSL: &str = include_str!("../shaders/dense_rows.wgsl");
pub const DENSE_ROWS_SUBGROUP_WGSL: &str = include_str!("../shaders/dense_rows_subgroup.wgsl");
pub const STEP_WGSL: &str = include_str!("../shaders/step.wgsl");
pub const GATHER_WGSL: &str = include_str!("../shaders/gather.wgsl");
pub const XENT_WGSL: &str = include_str!("../shaders/softmax_xent.wgsl");
pub const OPTIM_WGSL: &str = include_str!("../shaders/optim.wgsl");

pub struct Kernels {
    pub variant: Variant,
    pub workgroup_size: u32,
    /// Chooses the tunable kernels' variants per shape (autotune.rs).
    pub tuner: crate::autotune::Tuner,
    /// Pipelines of the layers that are not in every model, compiled on first use and
    /// kept, with their modules, for every later layer of the same kind.
    on_demand: std::sync::Mutex<OnDemand>,
    pub conv_fwd: Kernel,
    pub conv_fwd_plain: Kernel,
    pub conv_dx: Kernel,
    pub conv_weight_layout: Kernel,
    pub conv_wgrad: Kernel,
    pub conv_wgrad_ic: Kernel,
    pub conv_wgrad_pooled: Kernel,
    pub conv_wgrad_reduce: Kernel,
    pub maxpool_relu_backward: Kernel,
    pub matmul: Kernel,
    pub matmul_rows: Kernel,
    pub matmul_cols: Kernel,
    pub bias_grad: Kernel,
    pub matmul_reduce: Kernel,
    pub gather: Kernel,
    pub softmax_xent: Kernel,
    pub adam: Kernel,
    pub sgd: Kernel,
    /// One thread per pixel: 64 lanes at least, as the on-demand kernels.
    pub gather_augment: Kernel,
    pub adamw: Kernel,
    pub sgd_ext: Kernel,
}

/// Which implementation a kernel family uses on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Works on every adapter.
    Plain,
    /// Needs subgroup operations with subgroups exactly as wide as the workgroup (8 lanes).
    Subgroup8,
}

impl Variant {
    /// The fastest variant this device can run: the one selection point for kernel variants.
    pub fn best_for(gpu: &Gpu) -> Variant {
        Variant::select(gpu.subgroup_size(), gpu.workgroup_size())
    }

    /// The choice itself: Subgroup8 only where subgroup operations are enabled (the
    /// SUBGROUP feature) with a fixed size of 8 lanes, and workgroups are 8 lanes.
    pub fn select(subgroup_size: Option<u32>, workgroup_size: u32) -> Variant {
        if subgroup_size == Some(8) && workgroup_size == 8 { Variant::Subgroup8 } else { Variant::Plain }
    }

    /// Every variant the program can build.
    pub const ALL: [Variant; 2] = [Variant::Plain, Variant::Subgroup8];

    /// Whether the variant's shaders use subgroup operations (WGSL `enable subgroups`
    /// semantics: the SUBGROUP feature must be enabled on the device).
    pub fn needs_subgroups(self) -> bool {
        self == Variant::Subgroup8
    }
}

#[derive(Default)]
struct OnDemand {
    modules: std::collections::HashMap<&'static str, wgpu::ShaderModule>,
    /// By entry point and override constants.
    kernels: std::collections::HashMap<String, Kernel>,
}

/// The modules that Kernels compiles only when a layer asks (`Kernels::on_demand`).
fn on_demand_sources(variant: Variant) -> Vec<(&'static str, String)> {
    vec![
        ("gap.wgsl", crate::layers::gap::GAP_WGSL.to_string()),
        ("batchnorm.wgsl", format!("{STEP_WGSL}\n{}", crate::layers::batchnorm::BATCHNORM_WGSL)),
        ("dropout.wgsl", format!("{STEP_WGSL}\n{}", crate::layers::dropout::DROPOUT_WGSL)),
        ("relu.wgsl", crate::layers::relu::RELU_WGSL.to_string()),
        ("maxpool.wgsl", crate::layers::maxpool::MAXPOOL_WGSL.to_string()),
        ("conv_generic.wgsl", crate::layers::conv_generic::CONV_GENERIC_WGSL.to_string()),
        ("clip.wgsl", crate::layers::clip::CLIP_WGSL.to_string()),
        // the autotuner's matmul variants, with the A fetch of the family's variant
        ("dense_variants.wgsl", dense_variants(variant)),
        // the autotuner's GPU-shaped conv variant
        ("conv_variants.wgsl", format!("{CONV_WGSL}\n{CONV_TILED_WGSL}")),
    ]
}

/// The on-demand module of the autotuner's matmul variants, with `variant`'s A fetch.
pub(crate) fn dense_variants(variant: Variant) -> String {
    use crate::layers::dense::{
        DENSE_TALL_FETCH_SUBGROUP_WGSL, DENSE_TALL_FETCH_WGSL, DENSE_TALL_WGSL, DENSE_TILED_F32_WGSL,
        DENSE_TILED_WGSL,
    };
    let (a_fetch, quad_fetch) = if variant.needs_subgroups() {
        (DENSE_ROWS_SUBGROUP_WGSL, DENSE_TALL_FETCH_SUBGROUP_WGSL)
    } else {
        (DENSE_ROWS_WGSL, DENSE_TALL_FETCH_WGSL)
    };
    format!(
        "{DENSE_WGSL}\n{a_fetch}\n{DENSE_TALL_WGSL}\n{quad_fetch}\n{DENSE_TILED_F32_WGSL}\n{DENSE_TILED_WGSL}"
    )
}

/// The modules only a device with SHADER_F16 may build (on demand, with --f16-storage): the
/// f16-storage matmul_tiled and its to_f16 copy. Kept out of `shader_sources`, which every
/// adapter must be able to build.
pub fn f16_sources() -> Vec<(&'static str, String)> {
    use crate::layers::dense::{DENSE_TILED_F16_WGSL, DENSE_TILED_WGSL};
    // dense.wgsl's other entry points need an A fetch; the plain one suits any device
    vec![(
        "dense_f16.wgsl",
        format!("enable f16;\n{DENSE_WGSL}\n{DENSE_ROWS_WGSL}\n{DENSE_TILED_F16_WGSL}\n{DENSE_TILED_WGSL}"),
    )]
}

/// The conv kernels' sources the autotuner chooses between for `variant`: the family's
/// module and the tiled variant's (the autotune cache's key fingerprints them).
pub(crate) fn conv_variant_sources(variant: Variant) -> String {
    format!("{}\n{CONV_TILED_WGSL}", family_source(variant, "conv.wgsl"))
}

/// The source of the family module `label` Kernels compiles for `variant` (empty if none).
pub(crate) fn family_source(variant: Variant, label: &str) -> String {
    kernel_sources(variant).into_iter().find(|m| m.0 == label).map(|m| m.1).unwrap_or_default()
}

/// The WGSL source of every shader module the program can build for `variant`, labelled
/// by family: the kernels Kernels compiles up front, then those it compiles on demand. Each
/// module declares `override WG: u32`.
pub fn shader_sources(variant: Variant) -> Vec<(&'static str, String)> {
    let mut sources = kernel_sources(variant);
    sources.extend(on_demand_sources(variant));
    sources
}

/// The modules Kernels::with_config compiles, in its order.
fn kernel_sources(variant: Variant) -> Vec<(&'static str, String)> {
    // A family's variants differ only in one helper appended to the common source.
    let (conv_part, wgrad_part, dense_part) = match variant {
        Variant::Plain => (CONV_ACCUMULATE_WGSL, CONV_WGRAD_GRADS_WGSL, DENSE_ROWS_WGSL),
        Variant::Subgroup8 => {
            (CONV_ACCUMULATE_SUBGROUP_WGSL, CONV_WGRAD_GRADS_SUBGROUP_WGSL, DENSE_ROWS_SUBGROUP_WGSL)
        }
    };
    vec![
        ("conv.wgsl", format!("{CONV_WGSL}\n{conv_part}")),
        ("conv_wgrad.wgsl", format!("{CONV_WGRAD_WGSL}\n{wgrad_part}")),
        ("conv_pool.wgsl", POOL_WGSL.to_string()),
        ("dense.wgsl", format!("{DENSE_WGSL}\n{dense_part}")),
        ("gather.wgsl", format!("{STEP_WGSL}\n{GATHER_WGSL}")),
        ("softmax_xent.wgsl", format!("{STEP_WGSL}\n{XENT_WGSL}")),
        ("optim.wgsl", format!("{STEP_WGSL}\n{OPTIM_WGSL}")),
    ]
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        Kernels::with_variant(gpu, Variant::best_for(gpu))
    }

    /// The same kernels with another tuner (`--autotune`).
    pub fn with_tuner(mut self, tuner: crate::autotune::Tuner) -> Kernels {
        self.tuner = tuner;
        self
    }

    pub fn with_variant(gpu: &Gpu, variant: Variant) -> Result<Kernels> {
        Kernels::with_config(gpu, variant, gpu.workgroup_size())
    }

    /// Any variant at any workgroup size (Subgroup8 needs 8): tests use this to run the
    /// configuration a real GPU gets (Plain, 64 lanes) on a CPU adapter too.
    pub fn with_config(gpu: &Gpu, variant: Variant, workgroup_size: u32) -> Result<Kernels> {
        if variant == Variant::Subgroup8 && (workgroup_size != 8 || gpu.subgroup_size() != Some(8)) {
            return Err("the Subgroup8 kernels need 8-lane subgroups and 8-lane workgroups".into());
        }
        let modules: Vec<wgpu::ShaderModule> =
            kernel_sources(variant).iter().map(|(label, source)| shader(gpu, label, source)).collect();
        let [conv, wgrad, pool, dense, gather, xent, optim] = &modules[..] else {
            return Err("internal error: unexpected shader module count".into());
        };
        // Kernels of one value (or one sum) per thread, without subgroup operations, get
        // the on-demand kernels' wider workgroups (see ON_DEMAND_WG).
        let wide = workgroup_size.max(ON_DEMAND_WG);
        let kernels = Kernels {
            variant,
            workgroup_size,
            // off unless a command asks (training and bench: --autotune)
            tuner: crate::autotune::Tuner::with_cache(gpu, Default::default(), None),
            on_demand: Default::default(),
            conv_fwd: Kernel::new(gpu, conv, "conv_fwd", workgroup_size),
            conv_fwd_plain: Kernel::new(gpu, conv, "conv_fwd_plain", workgroup_size),
            conv_dx: Kernel::new(gpu, conv, "conv_dx", workgroup_size),
            conv_weight_layout: Kernel::new(gpu, conv, "conv_weight_layout", wide),
            conv_wgrad: Kernel::new(gpu, wgrad, "conv_wgrad", workgroup_size),
            conv_wgrad_ic: Kernel::new(gpu, wgrad, "conv_wgrad_ic", workgroup_size),
            conv_wgrad_pooled: Kernel::new(gpu, wgrad, "conv_wgrad_pooled", workgroup_size),
            conv_wgrad_reduce: Kernel::new(gpu, wgrad, "conv_wgrad_reduce", wide),
            maxpool_relu_backward: Kernel::new(gpu, pool, "maxpool_relu_backward", wide),
            matmul: Kernel::new(gpu, dense, "matmul", workgroup_size),
            matmul_rows: Kernel::new(gpu, dense, "matmul_rows", workgroup_size),
            matmul_cols: Kernel::new(gpu, dense, "matmul_cols", workgroup_size),
            bias_grad: Kernel::new(gpu, dense, "bias_grad", wide),
            matmul_reduce: Kernel::new(gpu, dense, "matmul_reduce", wide),
            gather: Kernel::new(gpu, gather, "gather", wide),
            softmax_xent: Kernel::new(gpu, xent, "softmax_xent", workgroup_size),
            adam: Kernel::new(gpu, optim, "adam", wide),
            sgd: Kernel::new(gpu, optim, "sgd", wide),
            gather_augment: Kernel::new(gpu, gather, "gather_augment", wide),
            adamw: Kernel::new(gpu, optim, "adamw", wide),
            sgd_ext: Kernel::new(gpu, optim, "sgd_ext", wide),
        };
        gpu.wait().map_err(|e| format!("compiling the WGSL kernels failed: {e}"))?;
        Ok(kernels)
    }
}

/// Lanes per workgroup of the on-demand kernels at least: they are one thread per value,
/// a few values or a chunk, without subgroup operations, and on a CPU adapter, where a
/// workgroup's start-up costs about as much as a few values' work, 64 lanes ran them 2-3
/// times faster than 8 (bn-cnn's ReLU, one value a thread: 56 -> 17 ms per step on
/// lavapipe).
pub const ON_DEMAND_WG: u32 = 64;

impl Kernels {
    /// Entry point `entry` of on-demand module `label` (gap.wgsl, batchnorm.wgsl,
    /// dropout.wgsl, relu.wgsl, maxpool.wgsl, conv_generic.wgsl), compiled once per device
    /// however many layers use it.
    pub fn on_demand(&self, gpu: &Gpu, label: &'static str, entry: &'static str) -> Result<Kernel> {
        self.on_demand_with(gpu, label, entry, &[])
    }

    /// `on_demand` with the module's `override` constants set (each setting is its own
    /// pipeline, compiled once); "WG" sets the workgroup size, else the default for
    /// on-demand kernels.
    pub fn on_demand_with(
        &self,
        gpu: &Gpu,
        label: &'static str,
        entry: &'static str,
        overrides: &[(&'static str, u32)],
    ) -> Result<Kernel> {
        let mut cache =
            self.on_demand.lock().map_err(|_| "internal error: kernel cache poisoned".to_string())?;
        let key = format!("{label} {entry}{overrides:?}");
        if let Some(k) = cache.kernels.get(&key) {
            return Ok(k.clone());
        }
        if !cache.modules.contains_key(label) {
            if label == "dense_f16.wgsl" && !gpu.has_f16() {
                return Err(format!("{entry}: this adapter has no f16 support (SHADER_F16)"));
            }
            let (_, source) = on_demand_sources(self.variant)
                .into_iter()
                .chain(f16_sources())
                .find(|(l, _)| *l == label)
                .ok_or_else(|| format!("internal error: no shader module {label}"))?;
            cache.modules.insert(label, shader(gpu, label, &source));
        }
        // "WG" among the overrides sets the workgroup size itself
        let wg =
            overrides.iter().find(|o| o.0 == "WG").map_or(self.workgroup_size.max(ON_DEMAND_WG), |o| o.1);
        let others: Vec<(&str, u32)> = overrides.iter().copied().filter(|o| o.0 != "WG").collect();
        let kernel = Kernel::with_overrides(gpu, &cache.modules[label], entry, wg, &others);
        cache.kernels.insert(key, kernel.clone());
        Ok(kernel)
    }
}

/// Per-step values, written once per group of steps into one slot each of `StepSlots`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    /// Index of the batch's first sample in the epoch's order.
    pub start: u32,
    /// Valid samples in this batch (the last batch of an epoch may be short).
    pub count: u32,
    /// The optimiser update this training step makes (1-based, low 32 bits; 0 when
    /// evaluating): dropout's masks are hashed from it.
    pub update: u32,
    pub _pad0: u32,
    pub step_size: f32,
    pub sqrt_bias_correction2: f32,
    pub lr: f32,
    pub _pad1: f32,
}

/// Uniform slots (256 bytes apart, the widest offset alignment allowed) for the steps of
/// one submitted group.
pub struct StepSlots {
    pub buffer: wgpu::Buffer,
    pub count: usize,
}

pub const STEP_STRIDE: u64 = 256;

impl StepSlots {
    pub fn new(gpu: &Gpu, count: usize) -> StepSlots {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step slots"),
            size: STEP_STRIDE * count as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        StepSlots { buffer, count }
    }

    pub fn write(&self, gpu: &Gpu, steps: &[Step]) {
        let mut bytes = vec![0u8; STEP_STRIDE as usize * steps.len()];
        for (i, s) in steps.iter().enumerate() {
            let at = i * STEP_STRIDE as usize;
            bytes[at..at + std::mem::size_of::<Step>()].copy_from_slice(bytemuck::bytes_of(s));
        }
        gpu.queue.write_buffer(&self.buffer, 0, &bytes);
    }

    /// One bind group per slot for `kernel`'s group 1.
    pub fn bind_groups(&self, gpu: &Gpu, kernel: &Kernel) -> Vec<wgpu::BindGroup> {
        (0..self.count)
            .map(|slot| {
                let binding = wgpu::BufferBinding {
                    buffer: &self.buffer,
                    offset: slot as u64 * STEP_STRIDE,
                    size: wgpu::BufferSize::new(std::mem::size_of::<Step>() as u64),
                };
                kernel.bind(gpu, 1, &[(0, wgpu::BindingResource::Buffer(binding))])
            })
            .collect()
    }
}

/// A kernel launch with its bindings fixed, ready to record any number of times.
#[derive(Clone)]
pub struct Dispatch {
    pub name: &'static str,
    /// Which layer and pass it belongs to ("conv2 backward"); set by the model.
    pub layer: String,
    /// Floating-point operations per launch (multiply-add = 2); 0 for data movement.
    pub flops: u64,
    /// Bytes the launch must read and write at least (each value once), for the
    /// memory-bound kernels' GB/s; 0 where not counted.
    pub bytes: u64,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    /// Empty unless the kernel reads the per-step uniform (group 1).
    pub step_groups: Vec<wgpu::BindGroup>,
    pub grid: (u32, u32),
    /// Worst-case loop iterations per invocation (loop_budget.rs); every dispatch of a
    /// model must have one before it runs.
    pub loops: Option<LoopBound>,
}

impl Dispatch {
    pub fn new(
        gpu: &Gpu,
        kernel: &Kernel,
        threads: u32,
        entries: &[(u32, wgpu::BindingResource)],
    ) -> Result<Dispatch> {
        Ok(Dispatch {
            name: kernel.name,
            layer: String::new(),
            flops: 0,
            bytes: 0,
            pipeline: kernel.pipeline.clone(),
            bind_group: kernel.bind(gpu, 0, entries),
            step_groups: Vec::new(),
            grid: kernel.grid(threads, gpu)?,
            loops: None,
        })
    }

    /// A dispatch with an explicit workgroup count (for kernels that map workgroups themselves).
    pub fn with_groups(
        gpu: &Gpu,
        kernel: &Kernel,
        groups: u32,
        entries: &[(u32, wgpu::BindingResource)],
    ) -> Result<Dispatch> {
        Dispatch::new(gpu, kernel, groups.saturating_mul(kernel.workgroup_size), entries)
    }

    pub fn with_flops(mut self, flops: u64) -> Dispatch {
        self.flops = flops;
        self
    }

    pub fn with_bytes(mut self, bytes: u64) -> Dispatch {
        self.bytes = bytes;
        self
    }

    pub fn with_loops(mut self, bound: LoopBound) -> Dispatch {
        self.loops = Some(bound);
        self
    }

    pub fn with_steps(mut self, gpu: &Gpu, kernel: &Kernel, slots: &StepSlots) -> Dispatch {
        self.step_groups = slots.bind_groups(gpu, kernel);
        self
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass, slot: usize) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        if let Some(group) = self.step_groups.get(slot) {
            pass.set_bind_group(1, group, &[]);
        }
        pass.dispatch_workgroups(self.grid.0, self.grid.1, 1);
    }
}

/// The whole of a buffer as a binding.
pub fn whole(buffer: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
    buffer.as_entire_binding()
}

/// `len` f32 words starting at word `offset` (which must respect the offset alignment).
pub fn words(buffer: &wgpu::Buffer, offset: usize, len: usize) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: (offset * 4) as u64,
        size: wgpu::BufferSize::new((len.max(1) * 4) as u64),
    })
}

/// The host's size of each struct a shader reads as a uniform, by its WGSL name: a test
/// checks them against the shaders' own layouts (tests/shader_translation.rs).
pub fn uniform_struct_sizes() -> Vec<(&'static str, usize)> {
    use crate::layers::*;
    use std::mem::size_of;
    vec![
        ("Step", size_of::<Step>()),
        ("ConvParams", size_of::<conv::ConvParams>()),
        ("WgradParams", size_of::<conv::WgradParams>()),
        ("PoolParams", size_of::<conv::PoolParams>()),
        ("MatmulParams", size_of::<dense::MatmulParams>()),
        ("GatherParams", size_of::<input::GatherParams>()),
        ("XentParams", size_of::<loss::XentParams>()),
        ("OptimParams", size_of::<optim::OptimParams>()),
        ("BnParams", size_of::<batchnorm::BnParams>()),
        ("DropParams", size_of::<dropout::DropParams>()),
        ("GapParams", size_of::<gap::GapParams>()),
        ("ReluParams", size_of::<relu::ReluParams>()),
        ("MaxPoolParams", size_of::<maxpool::MaxPoolParams>()),
        ("ConvGenericParams", size_of::<conv_generic::ConvGenericParams>()),
        ("ClipParams", size_of::<clip::ClipParams>()),
        // loop_budget::measure uploads [limit, seed, stop, 0]
        ("ProbeParams", size_of::<[u32; 4]>()),
    ]
}

/// Constants the host and a shader must agree on: (module label, WGSL constant, value).
pub fn shared_constants() -> Vec<(&'static str, &'static str, u32)> {
    use crate::layers::{conv, dense, dropout, maxpool, relu};
    vec![
        ("relu.wgsl", "PER_THREAD", relu::PER_THREAD as u32),
        ("maxpool.wgsl", "PER_THREAD", maxpool::PER_THREAD),
        ("dropout.wgsl", "PER_THREAD", dropout::PER_THREAD as u32),
        ("conv.wgsl", "OT", conv::OUT_TILE as u32),
        ("conv_wgrad.wgsl", "OT", conv::WGRAD_TILE as u32),
        ("conv_variants.wgsl", "OT", conv::OUT_TILE as u32),
        ("conv_variants.wgsl", "TILE_LANES", conv::TILED_WG),
        ("conv_variants.wgsl", "TILE_BLOCKS", conv::TILED_BLOCKS),
        ("conv_variants.wgsl", "TILED_IC", conv::TILED_IC),
        ("conv_variants.wgsl", "PATCH_SIDE", conv::TILED_PATCH_SIDE),
        ("dense.wgsl", "TM", dense::TILE.0),
        ("dense.wgsl", "TN", dense::TILE.1),
    ]
}
