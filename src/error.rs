//! What a command fails with. The kind decides the exit code and the printing, which a
//! plain string could not say: a usage error exits 2, anything else 1.

use crate::cli::Cli;
use clap::CommandFactory;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// A mistake on the command line (exit 2). `with_usage`: printed as clap prints its own
    /// errors, with the usage line and the hint to --help; else in one line (a model string
    /// or file, whose message already names the token or layer to fix).
    Usage { message: String, with_usage: bool },
    /// Anything else: data, files, the adapter, the GPU (exit 1, one line).
    Failed(String),
}

impl CommandError {
    /// A usage error printed the way clap prints its own.
    pub fn usage(message: impl Into<String>) -> CommandError {
        CommandError::Usage { message: message.into(), with_usage: true }
    }

    /// A usage error in one line.
    pub fn usage_line(message: impl Into<String>) -> CommandError {
        CommandError::Usage { message: message.into(), with_usage: false }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage { .. } => 2,
            CommandError::Failed(_) => 1,
        }
    }

    /// Writes the error to stderr.
    pub fn print(&self) {
        match self {
            CommandError::Usage { message, with_usage: true } => {
                let _ = Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message).print();
            }
            CommandError::Usage { message, .. } | CommandError::Failed(message) => {
                eprintln!("error: {message}")
            }
        }
    }
}

impl From<String> for CommandError {
    fn from(message: String) -> CommandError {
        CommandError::Failed(message)
    }
}

impl From<&str> for CommandError {
    fn from(message: &str) -> CommandError {
        CommandError::Failed(message.to_string())
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            CommandError::Usage { message, .. } | CommandError::Failed(message) => f.write_str(message),
        }
    }
}
