use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Mesa's implicit Vulkan layer VK_LAYER_MESA_device_select connects to Wayland to find
    // the display's GPU, and without XDG_RUNTIME_DIR prints an error twice. gpu-train ranks
    // adapters itself and never presents, so it turns the layer off (NODEVICE_SELECT=1),
    // unless the user set it or chose a device through it (MESA_VK_DEVICE_SELECT).
    if std::env::var_os("NODEVICE_SELECT").is_none() && std::env::var_os("MESA_VK_DEVICE_SELECT").is_none() {
        // SAFETY: nothing has started a thread yet (no wgpu call, no signal handler), so no
        // other thread can be reading the environment.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    // clap exits with 2 on usage errors and 0 for --help/--version.
    let args = gpu_train::cli::Cli::parse();
    match gpu_train::cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            error.print();
            ExitCode::from(error.exit_code())
        }
    }
}
