//! `nightshift schedule preview`: the next fire times of a schedule expression.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nightshift_core::schedule::Schedule;

use crate::cli::{Output, ScheduleCommand};

pub fn run(command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let ScheduleCommand::Preview {
        expression,
        timezone,
        from,
        count,
        output,
    } = command;
    let schedule = Schedule::parse(&expression)?;
    let tz: Tz = timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("--timezone: unknown IANA time zone {timezone:?}"))?;
    let mut after = match from {
        Some(from) => DateTime::parse_from_rfc3339(&from)
            .with_context(|| format!("--from: {from:?} is not an RFC 3339 timestamp"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let mut fires = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(next) = schedule.next_after(after, tz) else {
            break;
        };
        fires.push(next.with_timezone(&tz).to_rfc3339());
        after = next;
    }
    match output {
        Output::Table => fires.iter().for_each(|fire| println!("{fire}")),
        Output::Json => println!("{}", serde_json::to_string_pretty(&fires)?),
    }
    Ok(ExitCode::SUCCESS)
}
