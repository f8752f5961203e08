//! Shader translation for the back ends no test machine can run. Every WGSL module that
//! `kernels::shader_sources` lists, for every (variant, workgroup size) the program can build,
//! goes through naga (wgpu's own translator, at wgpu's version) the way wgpu takes it on Metal,
//! DX12 and Vulkan: parse, validate with the capabilities such a device offers, resolve
//! `override WG` for one entry point, and write MSL, HLSL or SPIR-V for it.
//!
//! A target that cannot offer subgroup operations must refuse a variant that needs them, and
//! then `Variant::select` must never pick such a variant without subgroups. The refusal is
//! wgpu's: it leaves the SUBGROUP feature off on such a device, so validation without the
//! SUBGROUP capability rejects the module (naga's MSL and HLSL writers would emit simd/wave
//! intrinsics at any level; its SPIR-V writer checks the capability list wgpu passes). Every
//! other error fails the test, naming module, entry point, variant, WG and target.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::time::Instant;

use gpu_train::kernels::{Variant, shader_sources};
use naga::back::pipeline_constants::{PipelineConstantError, process_overrides};
use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ExpressionError, FunctionError, ModuleInfo, ValidationFlags, Validator};

/// The workgroup sizes the program builds with: `Gpu::workgroup_size`, 8 lanes on software
/// adapters and 64 on GPUs.
const WORKGROUP_SIZES: [u32; 2] = gpu_train::gpu::WORKGROUP_SIZES;

/// Every subgroup size `Variant::select` may be handed: none (no SUBGROUP feature, or a
/// varying size) or a fixed power of two up to wgpu's maximum of 128 lanes.
fn subgroup_sizes() -> impl Iterator<Item = Option<u32>> {
    std::iter::once(None).chain((0..=7).map(|k| Some(1u32 << k)))
}

/// The (variant, workgroup size) pairs the program can build: those the selection rule
/// picks for some subgroup size.
fn configurations() -> Vec<(Variant, u32)> {
    let mut out = Vec::new();
    for wg in WORKGROUP_SIZES {
        for variant in Variant::ALL {
            if subgroup_sizes().any(|s| Variant::select(s, wg) == variant) {
                out.push((variant, wg));
            }
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Lang {
    Msl((u8, u8)),
    Hlsl(hlsl::ShaderModel),
    Spv((u8, u8)),
}

/// One back end at one target level, as wgpu drives it on a device at that level.
#[derive(Clone, Copy)]
struct Target {
    lang: Lang,
    /// Whether wgpu can offer the SUBGROUP feature on a device at this level.
    subgroups: bool,
    /// Whether the device has SHADER_F16 (only the f16 module's check asks for it).
    f16: bool,
}

const TARGETS: [Target; 6] = [
    // Metal: wgpu offers SUBGROUP (simd-group functions) on Apple7 / Mac2 family GPUs and
    // Metal 3, whose systems compile MSL 2.3 or newer; MSL 2.1 is an older device.
    Target { lang: Lang::Msl((2, 1)), subgroups: false, f16: false },
    Target { lang: Lang::Msl((2, 3)), subgroups: true, f16: false },
    // DX12: FXC tops out at shader model 5.1; wgpu offers SUBGROUP (wave intrinsics) only
    // from shader model 6.0 (DXC).
    Target { lang: Lang::Hlsl(hlsl::ShaderModel::V5_1), subgroups: false, f16: false },
    Target { lang: Lang::Hlsl(hlsl::ShaderModel::V6_0), subgroups: true, f16: false },
    // Vulkan 1.0 takes SPIR-V 1.0 and has no subgroup operations; Vulkan 1.1 takes 1.3.
    Target { lang: Lang::Spv((1, 0)), subgroups: false, f16: false },
    Target { lang: Lang::Spv((1, 3)), subgroups: true, f16: false },
];

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.lang {
            Lang::Msl((major, minor)) => write!(f, "MSL {major}.{minor}"),
            Lang::Hlsl(model) => write!(f, "HLSL SM {}", model.to_str().replace('_', ".")),
            Lang::Spv((major, minor)) => write!(f, "SPIR-V {major}.{minor}"),
        }
    }
}

impl Target {
    /// The naga capabilities wgpu's validation gets on such a device (the program requests
    /// SUBGROUP wherever the adapter has it).
    fn capabilities(&self) -> Capabilities {
        if self.subgroups {
            Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER
        } else {
            Capabilities::empty()
        }
    }

    /// The SPIR-V capabilities wgpu's Vulkan back end permits on such a device.
    fn spirv_capabilities(&self) -> naga::FastHashSet<spv::Capability> {
        use spv::Capability as C;
        let mut caps = vec![
            C::Shader,
            C::Matrix,
            C::Sampled1D,
            C::Image1D,
            C::ImageQuery,
            C::DerivativeControl,
            C::StorageImageExtendedFormats,
        ];
        if self.f16 {
            // what wgpu's Vulkan back end permits where SHADER_F16 is on
            caps.extend([C::Float16, C::StorageBuffer16BitAccess, C::UniformAndStorageBuffer16BitAccess]);
        }
        if self.subgroups {
            caps.extend([
                C::GroupNonUniform,
                C::GroupNonUniformVote,
                C::GroupNonUniformArithmetic,
                C::GroupNonUniformBallot,
                C::GroupNonUniformShuffle,
                C::GroupNonUniformShuffleRelative,
                C::GroupNonUniformQuad,
            ]);
        }
        caps.into_iter().collect()
    }
}

#[derive(Debug)]
enum TranslateError {
    Overrides(Box<PipelineConstantError>),
    WorkgroupSize([u32; 3]),
    Msl(msl::Error),
    MslEntryPoint(msl::EntryPointError),
    Hlsl(hlsl::Error),
    HlslEntryPoint(hlsl::EntryPointError),
    Spv(spv::Error),
    Empty,
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TranslateError::Overrides(e) => write!(f, "resolving overrides: {e}"),
            TranslateError::WorkgroupSize(size) => {
                write!(f, "workgroup size {size:?} after resolving WG does not hold WG lanes")
            }
            TranslateError::Msl(e) => write!(f, "{e}"),
            TranslateError::MslEntryPoint(e) => write!(f, "{e}"),
            TranslateError::Hlsl(e) => write!(f, "{e}"),
            TranslateError::HlslEntryPoint(e) => write!(f, "{e}"),
            TranslateError::Spv(e) => write!(f, "{e}"),
            TranslateError::Empty => write!(f, "the back end wrote nothing"),
        }
    }
}

impl TranslateError {
    /// A back end saying the target level lacks a feature the shader uses.
    fn is_missing_target_feature(&self) -> bool {
        matches!(
            self,
            TranslateError::Spv(spv::Error::MissingCapabilities(..))
                | TranslateError::Hlsl(hlsl::Error::ShaderModelTooLow(..))
                | TranslateError::Msl(
                    msl::Error::CapabilityNotSupported(_) | msl::Error::UnsupportedFunction(_)
                )
        )
    }
}

/// Whether validation failed only because the device lacks subgroup operations.
fn lacks_subgroups(err: &naga::WithSpan<naga::valid::ValidationError>) -> bool {
    let subgroup = Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER;
    let mut next: Option<&(dyn Error + 'static)> = Some(err.as_inner());
    while let Some(e) = next {
        if let Some(FunctionError::MissingCapability(caps)) = e.downcast_ref() {
            return subgroup.contains(*caps);
        }
        if let Some(ExpressionError::MissingCapabilities(caps)) = e.downcast_ref() {
            return subgroup.contains(*caps);
        }
        next = e.source();
    }
    false
}

/// Resolves `override WG` for one entry point and writes it for `target`, with binding maps
/// like wgpu's (no faked bindings).
fn translate(
    module: &naga::Module,
    info: &ModuleInfo,
    entry: &naga::EntryPoint,
    wg: u32,
    target: &Target,
) -> Result<(), TranslateError> {
    let mut constants = naga::back::PipelineConstants::default();
    constants.insert("WG".to_string(), f64::from(wg));
    let (module, info) = process_overrides(module, info, Some((entry.stage, &entry.name)), &constants)
        .map_err(|e| TranslateError::Overrides(Box::new(e)))?;
    let ep = module.entry_points.iter().find(|ep| ep.name == entry.name && ep.stage == entry.stage);
    let size = ep.map(|ep| ep.workgroup_size).unwrap_or_default();
    // Kernel::grid dispatches threads / WG workgroups: each must hold exactly WG lanes.
    if size.iter().product::<u32>() != wg {
        return Err(TranslateError::WorkgroupSize(size));
    }
    let bindings: Vec<(naga::ResourceBinding, &naga::GlobalVariable)> =
        module.global_variables.iter().filter_map(|(_, g)| Some((g.binding?, g))).collect();

    match target.lang {
        Lang::Msl(lang_version) => {
            let mut resources = msl::EntryPointResources::default();
            let (mut buffers, mut textures, mut samplers) = (0u8, 0u8, 0u8);
            for (binding, global) in &bindings {
                let mut bind = msl::BindTarget::default();
                match (global.space, &module.types[global.ty].inner) {
                    (naga::AddressSpace::Uniform, _) => {
                        bind.buffer = Some(buffers);
                        buffers += 1;
                    }
                    (naga::AddressSpace::Storage { access }, _) => {
                        bind.buffer = Some(buffers);
                        bind.mutable = access.contains(naga::StorageAccess::STORE);
                        buffers += 1;
                    }
                    (naga::AddressSpace::Handle, naga::TypeInner::Sampler { .. }) => {
                        bind.sampler = Some(msl::BindSamplerTarget::Resource(samplers));
                        samplers += 1;
                    }
                    (naga::AddressSpace::Handle, _) => {
                        bind.texture = Some(textures);
                        textures += 1;
                    }
                    _ => continue,
                }
                resources.resources.insert(*binding, bind);
            }
            resources.sizes_buffer = Some(buffers);
            let options = msl::Options {
                lang_version,
                per_entry_point_map: BTreeMap::from([(entry.name.clone(), resources)]),
                fake_missing_bindings: false,
                ..Default::default()
            };
            let pipeline = msl::PipelineOptions {
                entry_point: Some((entry.stage, entry.name.clone())),
                ..Default::default()
            };
            let (source, translation) =
                msl::write_string(&module, &info, &options, &pipeline).map_err(TranslateError::Msl)?;
            for name in translation.entry_point_names {
                name.map_err(TranslateError::MslEntryPoint)?;
            }
            if source.is_empty() {
                return Err(TranslateError::Empty);
            }
        }
        Lang::Hlsl(shader_model) => {
            let binding_map = bindings
                .iter()
                .map(|(binding, _)| {
                    let target = hlsl::BindTarget {
                        space: binding.group as u8,
                        register: binding.binding,
                        binding_array_size: None,
                        dynamic_storage_buffer_offsets_index: None,
                        restrict_indexing: false,
                    };
                    (*binding, target)
                })
                .collect();
            let options = hlsl::Options {
                shader_model,
                binding_map,
                fake_missing_bindings: false,
                ..Default::default()
            };
            let pipeline = hlsl::PipelineOptions { entry_point: Some((entry.stage, entry.name.clone())) };
            let mut source = String::new();
            let reflection = hlsl::Writer::new(&mut source, &options, &pipeline)
                .write(&module, &info, None)
                .map_err(TranslateError::Hlsl)?;
            for name in reflection.entry_point_names {
                name.map_err(TranslateError::HlslEntryPoint)?;
            }
            if source.is_empty() {
                return Err(TranslateError::Empty);
            }
        }
        Lang::Spv(lang_version) => {
            let binding_map = bindings
                .iter()
                .map(|(binding, _)| {
                    let info = spv::BindingInfo {
                        descriptor_set: binding.group,
                        binding: binding.binding,
                        binding_array_size: None,
                    };
                    (*binding, info)
                })
                .collect();
            let options = spv::Options {
                lang_version,
                capabilities: Some(target.spirv_capabilities()),
                binding_map,
                fake_missing_bindings: false,
                ..Default::default()
            };
            let pipeline =
                spv::PipelineOptions { shader_stage: entry.stage, entry_point: entry.name.clone() };
            let words =
                spv::write_vec(&module, &info, &options, Some(&pipeline)).map_err(TranslateError::Spv)?;
            if words.first() != Some(&0x0723_0203) {
                return Err(TranslateError::Empty);
            }
        }
    }
    Ok(())
}

/// Where a target refuses a subgroup variant, the program must never pick that variant
/// without the SUBGROUP feature (`Gpu::subgroup_size` is None then), at any workgroup size.
fn check_never_selected_without_subgroups(variant: Variant, target: &Target) -> Result<(), String> {
    for wg in 1..=1024 {
        let picked = Variant::select(None, wg);
        if picked.needs_subgroups() {
            return Err(format!(
                "{target} refuses {variant:?}, yet Variant::select(None, {wg}) picks {picked:?}, \
                 which needs subgroups"
            ));
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    translated: usize,
    refused: usize,
}

#[test]
fn every_shader_translates_for_metal_dx12_and_vulkan() {
    let started = Instant::now();
    let configurations = configurations();
    for variant in Variant::ALL {
        assert!(
            configurations.iter().any(|&(v, _)| v == variant),
            "{variant:?} is never selected at workgroup sizes {WORKGROUP_SIZES:?}, so nothing here covers it"
        );
    }

    let mut failures: Vec<String> = Vec::new();
    let mut total_translated = 0;
    for &(variant, wg) in &configurations {
        // the kernels, and the probe every device runs once when it opens
        let mut sources = shader_sources(variant);
        sources.push(("loop_probe.wgsl", gpu_train::loop_budget::PROBE_WGSL.to_string()));
        let mut entry_points = 0;
        let mut tallies: Vec<Tally> = TARGETS.iter().map(|_| Tally::default()).collect();
        for (label, source) in &sources {
            let module = match naga::front::wgsl::parse_str(source) {
                Ok(module) => module,
                Err(e) => {
                    failures.push(format!("{label} ({variant:?}, WG {wg}): {}", e.emit_to_string(source)));
                    continue;
                }
            };
            if module.entry_points.is_empty() {
                failures.push(format!("{label} ({variant:?}, WG {wg}): no entry points"));
            }
            entry_points += module.entry_points.len();
            for (target, tally) in TARGETS.iter().zip(&mut tallies) {
                let info =
                    match Validator::new(ValidationFlags::all(), target.capabilities()).validate(&module) {
                        Ok(info) => info,
                        Err(e) if variant.needs_subgroups() && !target.subgroups && lacks_subgroups(&e) => {
                            tally.refused += module.entry_points.len();
                            if let Err(msg) = check_never_selected_without_subgroups(variant, target) {
                                failures.push(msg);
                            }
                            continue;
                        }
                        Err(e) => {
                            failures.push(format!(
                                "{label} ({variant:?}, WG {wg}), {target} validation: {}",
                                e.emit_to_string(source)
                            ));
                            continue;
                        }
                    };
                for entry in &module.entry_points {
                    // the GPU-shaped variants are built at their own sizes only
                    let wg = if entry.name == "matmul_tiled" {
                        gpu_train::layers::dense::TILED_WG
                    } else if *label == "conv_variants.wgsl" {
                        gpu_train::layers::conv::TILED_WG
                    } else {
                        wg
                    };
                    match translate(&module, &info, entry, wg, target) {
                        Ok(()) => tally.translated += 1,
                        Err(e)
                            if variant.needs_subgroups()
                                && !target.subgroups
                                && e.is_missing_target_feature() =>
                        {
                            tally.refused += 1;
                            if let Err(msg) = check_never_selected_without_subgroups(variant, target) {
                                failures.push(msg);
                            }
                        }
                        Err(e) => failures.push(format!(
                            "{label}: entry point {} ({variant:?}, WG {wg}), {target}: {e}",
                            entry.name
                        )),
                    }
                }
            }
        }
        let per_target: Vec<String> = TARGETS
            .iter()
            .zip(&tallies)
            .map(|(target, t)| match t.refused {
                0 => format!("{target} {}", t.translated),
                refused => format!("{target} {} (+{refused} refused: no subgroups)", t.translated),
            })
            .collect();
        println!(
            "{variant:?}, WG {wg}: {} modules, {entry_points} entry points; translated: {}",
            sources.len(),
            per_target.join(", ")
        );
        total_translated += tallies.iter().map(|t| t.translated).sum::<usize>();
    }
    println!("{total_translated} entry-point translations in {:.2?}", started.elapsed());

    assert!(failures.is_empty(), "{} translation failures:\n{}", failures.len(), failures.join("\n"));
    assert!(total_translated > 0, "no entry point was translated");
}

#[test]
fn host_and_shader_agree_on_uniform_layouts_and_shared_constants() {
    use gpu_train::kernels::{shared_constants, uniform_struct_sizes};
    let mut sources = shader_sources(Variant::Plain);
    sources.push(("loop_probe.wgsl", gpu_train::loop_budget::PROBE_WGSL.to_string()));
    let modules: Vec<(&str, naga::Module)> = sources
        .iter()
        .map(|(label, source)| (*label, naga::front::wgsl::parse_str(source).unwrap()))
        .collect();
    for (name, host) in uniform_struct_sizes() {
        let mut seen = 0;
        for (label, module) in &modules {
            for (_, ty) in module.types.iter() {
                if let (Some(n), naga::TypeInner::Struct { span, .. }) = (&ty.name, &ty.inner)
                    && n == name
                {
                    assert_eq!(
                        *span as usize, host,
                        "{label}: struct {name} is {span} bytes, the host's {host}"
                    );
                    seen += 1;
                }
            }
        }
        println!("{name}: {host} bytes, as in {seen} module(s)");
        assert!(seen > 0, "no shader declares struct {name}");
    }
    for (label, constant, host) in shared_constants() {
        let (_, module) = modules.iter().find(|(l, _)| *l == label).unwrap();
        let (_, c) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(constant)).unwrap();
        let value = match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref other => panic!("{label}: {constant} is {other:?}, not a u32 literal"),
        };
        println!("{label}: {constant} = {value}");
        assert_eq!(value, host, "{label}: const {constant} = {value}, the host uses {host}");
    }
}

/// The module only a device with SHADER_F16 builds (`--f16-storage`): it must validate with
/// naga's f16 capability and translate for each back end at the level where wgpu offers
/// SHADER_F16 (Metal: every device; DX12: shader model 6.2; Vulkan: the Float16 and 16-bit
/// storage capabilities).
#[test]
fn the_f16_module_translates_where_wgpu_offers_f16() {
    let targets = [
        Target { lang: Lang::Msl((2, 1)), subgroups: false, f16: true },
        Target { lang: Lang::Hlsl(hlsl::ShaderModel::V6_2), subgroups: false, f16: true },
        Target { lang: Lang::Spv((1, 0)), subgroups: false, f16: true },
    ];
    let mut failures = Vec::new();
    let mut translated = 0;
    for (label, source) in gpu_train::kernels::f16_sources() {
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&source)));
        for target in &targets {
            // where wgpu offers SHADER_F16 it also grants f16-in-f32 (pack2x16float): DX12 and
            // Metal on every device, Vulkan wherever the driver does not say otherwise (on
            // llvmpipe, exactly where it has SHADER_F16)
            let caps = target.capabilities()
                | Capabilities::SHADER_FLOAT16
                | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
            let info = match Validator::new(ValidationFlags::all(), caps).validate(&module) {
                Ok(info) => info,
                Err(e) => {
                    failures.push(format!("{label}, {target} validation: {}", e.emit_to_string(&source)));
                    continue;
                }
            };
            for entry in &module.entry_points {
                let wg = if entry.name == "matmul_tiled" { gpu_train::layers::dense::TILED_WG } else { 64 };
                let result = translate(&module, &info, entry, wg, target);
                match result {
                    Ok(()) => translated += 1,
                    Err(e) => failures.push(format!("{label}: entry point {}, {target}: {e}", entry.name)),
                }
            }
        }
    }
    println!("f16 module: {translated} entry point translations");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(translated > 0, "nothing translated");
}
