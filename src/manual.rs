//! `gpu-train man`: manual pages from the same clap definition as `--help`: the main page
//! on stdout, or with --dir DIR that page and one per subcommand (gpu-train-NAME.1, the
//! pages the main one's SEE ALSO names).

use crate::cli::Cli;
use std::path::Path;

fn render(command: clap::Command) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .map_err(|e| format!("cannot render the manual page: {e}"))?;
    Ok(out)
}

pub fn man_command(dir: Option<&Path>) -> Result<(), String> {
    let command = <Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        use std::io::Write;
        return std::io::stdout()
            .write_all(&render(command)?)
            .map_err(|e| format!("cannot write the manual page: {e}"));
    };
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{}: --dir needs a directory, and this is a file", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create it: {e}", dir.display()))?;
    let mut pages = vec![("gpu-train.1".to_string(), render(command.clone())?)];
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("gpu-train-{}", sub.get_name());
        // clap names are &'static str (without its `string` feature); a few bytes, once
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        let page = sub
            .clone()
            .name(static_name)
            .bin_name(format!("gpu-train {}", sub.get_name()))
            .version(env!("CARGO_PKG_VERSION"));
        pages.push((format!("{name}.1"), render(page)?));
    }
    for (name, text) in &pages {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: cannot write it: {e}", path.display()))?;
    }
    let names: Vec<&str> = pages.iter().map(|p| p.0.as_str()).collect();
    println!("wrote {} into {}", names.join(", "), dir.display());
    Ok(())
}
