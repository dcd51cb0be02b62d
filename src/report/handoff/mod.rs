//! The handoff page (SPEC §6): what a person must do to finish a run,
//! written so that someone who reads only this page can do it. `model` is
//! the page as data; `markdown`, `json` and `html` each take the model and
//! write it, and know nothing of each other. Arrows point one way: from
//! here to the renderers, from the renderers to the model.

pub mod html;
pub mod json;
pub mod markdown;
pub mod model;

pub use model::*;

/// How `handoff` writes the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HandoffFormat {
    /// Markdown, for a chat or an issue.
    #[default]
    Markdown,
    /// The page as data.
    Json,
    /// One self-contained HTML page (inline CSS, no scripts), for a browser or a phone.
    Html,
}

/// The page in a format.
pub fn render(h: &Handoff, format: HandoffFormat) -> String {
    match format {
        HandoffFormat::Markdown => markdown::to_markdown(h),
        HandoffFormat::Json => json::to_json(h),
        HandoffFormat::Html => html::to_html(h),
    }
}
