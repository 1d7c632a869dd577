//! `alertflow-beat`: the scheduler. Not built yet (see the beat issue): it
//! refuses to start rather than pretend to schedule.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("alertflow-beat: the scheduler is not implemented yet; schedules are not published");
    ExitCode::from(1)
}
