//! The subcommands other than `run` and `validate`, one file each.

pub mod tap;
pub mod test;
