//! Every problem inside a step names the step as SPEC §14 writes it,
//! `step "deploy" (steps[5])`, beside its file:line:col, whichever check
//! found it (parse, validation or a template).

use super::Source;
use crate::error::Diagnostic;
use crate::runbook::model::StepSpec;

impl Source {
    /// Records each step's place as written, for [`Source::locate_steps`]:
    /// `steps[3]`, or `steps[2].steps[0]` for an inner step of a rolling
    /// block (`steps` is the flattened list, inner steps after their block).
    pub(in crate::runbook) fn place_steps(&mut self, steps: &[StepSpec]) {
        let mut places: Vec<(String, String)> = Vec::with_capacity(steps.len());
        let mut top = 0;
        let mut inner: Vec<(String, usize)> = Vec::new();
        for step in steps {
            let place = match &step.block {
                None => {
                    top += 1;
                    format!("steps[{}]", top - 1)
                }
                Some(block) => {
                    let parent = places
                        .iter()
                        .rev()
                        .find(|(id, _)| id == block)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_else(|| format!("steps[{}]", top.max(1) - 1));
                    let n = match inner.iter_mut().find(|(b, _)| b == &parent) {
                        Some((_, n)) => {
                            *n += 1;
                            *n - 1
                        }
                        None => {
                            inner.push((parent.clone(), 1));
                            0
                        }
                    };
                    format!("{parent}.steps[{n}]")
                }
            };
            places.push((step.id.clone(), place));
        }
        self.step_places = places;
    }

    /// The diagnostics, each one whose place is inside a step's block
    /// naming that step (`step "a" (steps[0]): ...`), unless it does already.
    pub fn locate_steps(&self, diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
        diagnostics
            .into_iter()
            .map(|mut d| {
                let step = d.span.and_then(|(at, _)| self.step_at(at));
                if let Some((id, place)) = step {
                    d.message = name_step(&d.message, id, place);
                }
                d
            })
            .collect()
    }

    /// The step (id, place) whose block holds byte `at`.
    fn step_at(&self, at: usize) -> Option<(&str, &str)> {
        let index = (0..self.step_starts.len()).rev().find(|&i| {
            self.step_block(i)
                .is_some_and(|(start, end)| start <= at && at < self.block_end(start, end))
        })?;
        let (id, place) = self.step_places.get(index)?;
        Some((id, place))
    }

    /// Where a step's block ends: at the next step, or at the first line
    /// after it that starts a top-level key (the last step's block does not
    /// run on into `hosts:` written after `steps:`).
    fn block_end(&self, start: usize, end: usize) -> usize {
        let first_line_end = self.line_end(start);
        let mut offset = first_line_end;
        for line in self.text[first_line_end..end].split_inclusive('\n') {
            let top_level = line
                .chars()
                .next()
                .is_some_and(|c| !c.is_whitespace() && c != '#' && c != '-');
            if top_level && offset > first_line_end {
                return offset;
            }
            offset += line.len();
        }
        end
    }
}

/// `message` saying which step it is about, in SPEC §14's words.
fn name_step(message: &str, id: &str, place: &str) -> String {
    let named = format!("step {id:?} ({place})");
    if message.contains(&format!("({place}")) {
        return message.to_string();
    }
    if let Some(rest) = message.strip_prefix(&format!("step `{id}`")) {
        return format!("{named}{rest}");
    }
    format!("{named}: {message}")
}

#[cfg(test)]
mod tests {
    use super::name_step;

    #[test]
    fn a_message_names_its_step_once() {
        let n = |m: &str| name_step(m, "a", "steps[0]");
        assert_eq!(
            n("step `a` needs `b`, but no step has that id"),
            "step \"a\" (steps[0]) needs `b`, but no step has that id"
        );
        assert_eq!(
            n("step `a`, `run`: `vars.x` is undefined"),
            "step \"a\" (steps[0]), `run`: `vars.x` is undefined"
        );
        assert_eq!(
            n("unknown host `wbe`"),
            "step \"a\" (steps[0]): unknown host `wbe`"
        );
        let named = "unknown key `retires` in step \"a\" (steps[0])";
        assert_eq!(n(named), named);
        let serde = "step \"a\" (steps[0].http): missing field `url`";
        assert_eq!(n(serde), serde);
    }
}
