//! Colours and marks, on or off per `--color` and `NO_COLOR`.

use console::Style;

use crate::state::{RunState, StepState};

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream that is (or is not) a terminal.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// Styles for one output stream.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    /// Whether colours are on.
    pub color: bool,
}

impl Palette {
    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            style.force_styling(true).apply_to(text).to_string()
        } else {
            text.to_string()
        }
    }

    /// A step state with its mark, coloured.
    pub fn state(&self, state: StepState) -> String {
        let text = format!("{} {}", mark(state), state);
        self.paint(state_style(state), &text)
    }

    /// Just the mark of a state, coloured.
    pub fn mark(&self, state: StepState) -> String {
        self.paint(state_style(state), mark(state))
    }

    /// A run state, coloured.
    pub fn run_state(&self, state: RunState) -> String {
        self.run_state_word(state, state.as_str())
    }

    /// `word` in the colour of the run state `state`.
    pub fn run_state_word(&self, state: RunState, word: &str) -> String {
        let style = match state {
            RunState::Succeeded => Style::new().green().bold(),
            RunState::Failed => Style::new().red().bold(),
            RunState::Held => Style::new().yellow().bold(),
            RunState::Interrupted | RunState::Running => Style::new().magenta().bold(),
        };
        self.paint(style, word)
    }

    /// Dimmed text (step ids in prefixes, hints).
    pub fn dim(&self, text: &str) -> String {
        self.paint(Style::new().dim(), text)
    }

    /// Bold text.
    pub fn bold(&self, text: &str) -> String {
        self.paint(Style::new().bold(), text)
    }
}

fn state_style(state: StepState) -> Style {
    match state {
        StepState::Succeeded => Style::new().green(),
        StepState::Failed => Style::new().red().bold(),
        StepState::Held => Style::new().yellow().bold(),
        StepState::Blocked => Style::new().yellow(),
        StepState::Skipped => Style::new().dim(),
        StepState::Interrupted => Style::new().magenta(),
        StepState::Running => Style::new().cyan(),
        StepState::Pending => Style::new().dim(),
    }
}

/// The mark shown before a step in a state.
pub fn mark(state: StepState) -> &'static str {
    match state {
        StepState::Succeeded => "✓",
        StepState::Failed => "✗",
        StepState::Held => "⏸",
        StepState::Blocked => "⊘",
        StepState::Skipped => "↷",
        StepState::Interrupted => "!",
        StepState::Running => "▶",
        StepState::Pending => "·",
    }
}
