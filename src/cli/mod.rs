//! The command line (`args`) and the subcommands other than `run` and `validate`, one file
//! each; `api` is where the API clients (`tap`, `reload`) find the agent.

pub mod api;
pub mod args;
pub mod reload;
pub mod tap;
pub mod test;
