//! The live reporter, for a terminal: one spinner line per running step
//! (step, host, elapsed, latest output line), each finished step printed
//! once above them, and a footer with the counts.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::live_block::Blocks;
use super::plain::finished_line;
use super::style::Palette;
use super::summary::Summary;
use super::{Reporter, Verbosity};
use crate::events::Event;
use crate::state::StepState;

/// Prints a run with live progress on a terminal.
pub struct LiveReporter {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    footer: ProgressBar,
    palette: Palette,
    verbosity: Verbosity,
    summary: Summary,
    state_flag: String,
    total: usize,
    done: usize,
    held: usize,
    failed: usize,
    /// Per step on a group: its instances running now, and done so far.
    families: HashMap<String, (usize, usize)>,
    /// The rolling blocks: one bar for each, naming its hosts.
    blocks: Blocks,
}

impl LiveReporter {
    /// A reporter drawing on stdout.
    pub fn new(verbosity: Verbosity, palette: Palette, state_flag: &str) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let footer = multi.add(ProgressBar::new_spinner());
        footer.set_style(
            ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        LiveReporter {
            multi,
            bars: HashMap::new(),
            footer,
            palette,
            verbosity,
            summary: Summary::default(),
            state_flag: state_flag.to_string(),
            total: 0,
            done: 0,
            held: 0,
            failed: 0,
            families: HashMap::new(),
            blocks: Blocks::default(),
        }
    }

    /// Under `--wait`: the summary of a held pass says the command goes on
    /// by itself, not to type a resume.
    pub fn under_wait(mut self, waits: bool) -> Self {
        self.summary = std::mem::take(&mut self.summary).under_wait(waits);
        self
    }

    /// The instances of rolling blocks' inner steps (instance id, block
    /// id), in plan order: each block is one line naming the hosts in it
    /// now (SPEC §15).
    pub fn with_blocks(mut self, instances: Vec<(String, String)>) -> Self {
        let ids = instances.iter().map(|(_, b)| b.clone()).collect();
        self.summary = std::mem::take(&mut self.summary).with_blocks(ids);
        self.blocks = Blocks::new(instances);
        self
    }

    /// What a step's line is shared with: its block, or its step on a group.
    fn shared(&self, step: &str) -> Option<String> {
        self.blocks
            .block_of(step)
            .or_else(|| super::fleet::family_of(step))
            .map(str::to_string)
    }

    /// Instances running on the line of `key`.
    fn running_on(&self, key: &str) -> usize {
        if self.blocks.is_block(key) {
            return self.blocks.running(key);
        }
        self.families.get(key).map_or(1, |c| c.0)
    }

    fn update_footer(&self) {
        self.footer.set_message(format!(
            "{}/{} done · {} running · {} held · {} failed",
            self.done,
            self.total,
            // A step on a group, or a block, is one bar for all its
            // running instances.
            self.bars.keys().map(|k| self.running_on(k)).sum::<usize>(),
            self.held,
            self.failed
        ));
    }

    fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }
}

impl Reporter for LiveReporter {
    fn event(&mut self, event: &Event) {
        self.summary.record(event);
        match event {
            Event::RunStarted { steps, done, .. } => {
                self.total = *steps;
                self.done = *done;
                if let Some(line) = super::plain::started_line(event) {
                    self.println(&line);
                }
            }
            Event::StepStarted { .. } => self.step_started(event),
            Event::StepOutput { step, line, .. } => self.step_output(step, line),
            // What a stopped rollout leaves never ran: the summary names it.
            Event::StepFinished {
                state: StepState::Pending,
                ..
            } => {}
            Event::StepFinished { step, state, .. } => self.step_finished(event, step, *state),
            Event::RunFinished { run_id, state, .. } => self.run_finished(*run_id, *state),
        }
    }
}

/// The bar of a step on a group: `deploy on 3 hosts (97 done)`.
fn family_prefix(family: &str, running: usize, done: usize) -> String {
    format!(
        "{family} on {running} host{} ({done} done)",
        if running == 1 { "" } else { "s" }
    )
}

impl LiveReporter {
    /// The bar of `key`, made when it is the first of its line.
    fn bar(&mut self, key: String) -> &ProgressBar {
        self.bars.entry(key).or_insert_with(|| {
            let bar = self
                .multi
                .insert_before(&self.footer, ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix} {elapsed:>4} {wide_msg:.dim}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        })
    }

    fn step_started(&mut self, event: &Event) {
        let Event::StepStarted {
            step,
            host,
            attempt,
            reason,
            ..
        } = event
        else {
            return;
        };
        // The instances of a step on a group share one line, and those of
        // a block theirs.
        let family = self.shared(step);
        let prefix = match family.as_deref() {
            Some(b) if self.blocks.is_block(b) => {
                self.blocks.started(b, step);
                self.blocks.prefix(b)
            }
            Some(f) => {
                let counts = self.families.entry(f.to_string()).or_default();
                if *attempt == 1 {
                    counts.0 += 1;
                }
                family_prefix(f, counts.0, counts.1)
            }
            None => {
                let on = host
                    .as_deref()
                    .map(|h| format!(" on {h}"))
                    .unwrap_or_default();
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                format!("{step}{on}{again}")
            }
        };
        let in_block = family.as_deref().is_some_and(|b| self.blocks.is_block(b));
        let bar = self.bar(family.unwrap_or_else(|| step.clone()));
        bar.set_prefix(prefix);
        if in_block {
            // Which inner step, until it prints.
            bar.set_message(step.clone());
        }
        if reason.is_some() {
            if let Some(line) = super::plain::started_step_line(event) {
                self.println(&line);
            }
        }
        self.update_footer();
    }

    fn step_output(&mut self, step: &str, line: &str) {
        let key = self.shared(step);
        let key = key.as_deref().unwrap_or(step);
        if let Some(bar) = self.bars.get(key) {
            if self.blocks.is_block(key) {
                bar.set_message(format!("{step}: {line}"));
            } else {
                bar.set_message(line.to_string());
            }
        }
        if self.verbosity == Verbosity::Verbose {
            self.println(&format!(
                "{} {line}",
                self.palette.dim(&format!("[{step}]"))
            ));
        }
    }

    /// One instance of a shared line ended: whether others still run.
    fn instance_finished(&mut self, family: &str, step: &str) -> bool {
        if self.blocks.is_block(family) {
            let left = self.blocks.finished(family, step);
            if let Some(bar) = self.bars.get(family).filter(|_| left > 0) {
                bar.set_prefix(self.blocks.prefix(family));
            }
            return left > 0;
        }
        let counts = self.families.entry(family.to_string()).or_default();
        if self.bars.contains_key(family) {
            counts.0 = counts.0.saturating_sub(1);
        }
        counts.1 += 1;
        if let Some(bar) = self.bars.get(family) {
            bar.set_prefix(family_prefix(family, counts.0, counts.1));
        }
        counts.0 > 0
    }

    fn step_finished(&mut self, event: &Event, step: &str, state: StepState) {
        let family = self.shared(step);
        let still_running = match family.as_deref() {
            Some(f) => self.instance_finished(f, step),
            None => false,
        };
        if !still_running {
            if let Some(bar) = self.bars.remove(family.as_deref().unwrap_or(step)) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        // A block's own row is no step of its own: its hosts' are counted.
        match state {
            _ if self.blocks.is_block(step) => {}
            StepState::Succeeded | StepState::Skipped => self.done += 1,
            StepState::Held => self.held += 1,
            StepState::Failed => self.failed += 1,
            _ => {}
        }
        // A hundred succeeded instances are the bar's count, not lines.
        let quiet = family.is_some() && matches!(state, StepState::Succeeded | StepState::Skipped);
        if let Some(line) = self.blocks.finished_line(&self.palette, event) {
            self.println(&line);
        } else if !quiet {
            if let Some(line) = finished_line(&self.palette, event) {
                self.println(&line);
            }
        }
        self.update_footer();
    }

    fn run_finished(&mut self, run_id: i64, state: crate::state::RunState) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        self.footer.finish_and_clear();
        let _ = self.multi.clear();
        let text = self
            .summary
            .render(run_id, state, &self.palette, &self.state_flag);
        // A closed stdout (`runbook run x | head`) must not stop the run.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::family_prefix;

    #[test]
    fn a_step_on_a_group_is_one_line_counting_its_hosts() {
        assert_eq!(
            family_prefix("deploy", 3, 97),
            "deploy on 3 hosts (97 done)"
        );
        assert_eq!(family_prefix("deploy", 1, 0), "deploy on 1 host (0 done)");
    }
}
