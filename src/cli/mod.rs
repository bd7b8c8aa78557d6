//! The command line (`args`) and the subcommands other than `run` and `validate`, one file
//! each.

pub mod args;
pub mod tap;
pub mod test;
