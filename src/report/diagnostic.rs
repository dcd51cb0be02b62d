//! Validation errors rendered like a compiler's: file:line:col, the line,
//! a caret under the span, and a hint.

use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};

use crate::error::Diagnostic;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Rendered {
    message: String,
    src: NamedSource<String>,
    span: Option<SourceSpan>,
    help: Option<String>,
}

impl miette::Diagnostic for Rendered {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.span.map(|_| &self.src as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.span?;
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some("here".into()), span),
        )))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}

/// Renders diagnostics for a terminal (colors when `color`), each starting
/// with `error: FILE:LINE:COL: MESSAGE` so the place is greppable.
pub fn render(diagnostics: &[Diagnostic], source_text: &str, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_context_lines(1)
        .with_wrap_lines(false);
    let mut out = String::new();
    for d in diagnostics {
        let span = d.span.map(|s| on_boundaries(source_text, s));
        let place = match span {
            Some((offset, _)) => {
                let (line, col) = line_col(source_text, offset);
                format!("{}:{line}:{col}", d.file.display())
            }
            None => d.file.display().to_string(),
        };
        out.push_str(&format!("error: {place}: {}\n", d.message));
        let rendered = Rendered {
            message: d.message.clone(),
            src: NamedSource::new(d.file.display().to_string(), source_text.to_string()),
            span: span.map(|(o, l)| SourceSpan::new(o.into(), l)),
            help: d.hint.clone(),
        };
        let mut body = String::new();
        if handler.render_report(&mut body, &rendered).is_ok() {
            // Before the snippet, miette repeats the message we already printed.
            let lines: Vec<&str> = body.lines().collect();
            let from = lines
                .iter()
                .position(|l| l.contains("╭─[") || l.trim_start().starts_with("help:"))
                .unwrap_or(lines.len());
            for line in &lines[from..] {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The span moved onto character boundaries, inside the text.
fn on_boundaries(text: &str, (offset, len): (usize, usize)) -> (usize, usize) {
    let mut start = offset.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (offset + len).clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    (start, end - start)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    (line, col)
}
