//! One module per subcommand; this one dispatches and holds what several
//! share (loading a suite, the console, the delivery plan).

mod calibrate;
mod ci;
mod cleanup;
mod common;
mod compare;
mod config_show;
mod export;
mod gpus;
mod list;
mod merge;
mod recommend;
mod report;
mod setup;
mod sim;

use crate::cli::{Cli, Command, ConfigCommand, SetupArgs, SetupCommand, SimCommand};
use crate::config;
use crate::error::Error;
use common::Out;

pub(crate) async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Ci(args) => ci::run(args).await,
        Command::List(args) => list::run(&args),
        Command::Config(ConfigCommand::Show(args)) => config_show::run(&args),
        Command::Config(ConfigCommand::Schema) => {
            let schema = serde_json::to_string_pretty(&config::schema::suite(
                &crate::workload::test_kinds(),
            ))
            .expect("a schema serializes");
            Out::new().line(schema);
            Ok(())
        }
        Command::Report(args) => report::run(args).await,
        Command::Recommend(args) => recommend::run(&args).await,
        Command::Setup(SetupArgs {
            step: None,
            check: true,
            suite,
        }) => setup::check(&suite),
        Command::Setup(SetupArgs {
            step: None, suite, ..
        }) => setup::run(&suite),
        Command::Setup(SetupArgs {
            step: Some(SetupCommand::Data(args)),
            ..
        }) => setup::data(&args),
        Command::Gpus(args) => gpus::run(&args).await,
        Command::Compare(args) => compare::command(&args),
        Command::Cleanup(args) => cleanup::run(args).await,
        Command::Sim(SimCommand::Serve(args)) => sim::run(args).await,
        Command::Calibrate(args) => calibrate::run(&args),
        Command::Merge(args) => merge::run(args).await,
        Command::Export(args) => export::run(&args),
    }
}
