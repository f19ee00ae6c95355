//! `report.html`: a run's, a sweep's or a plan's results as one self-contained page (inline
//! CSS and SVG, no script, a policy that forbids fetching anything) that a person opens from
//! disk or mails. Every figure in its tables is a value of the JSON document the command
//! writes or prints (`summary.json`, the sweep's rows, `plan.json`), taken by its JSON pointer
//! and marked with it (`data-json="/flows/created"`), so that [`check`] can compare the page
//! with the document: the numbers agree by construction, and a test says so.

mod page;
mod plan;
mod run;
mod svg;
mod sweep;

use serde_json::Value;

pub use page::{Page, escape};
pub use plan::plan;
pub use run::run;
pub use svg::{Line, downsample};
pub use sweep::sweep;

/// The most rows a table of connections (or of a sweep's points) shows; the rest are summed
/// up in a line.
pub const MAX_ROWS: usize = 300;

/// What ran, for the top of a report.
#[derive(Clone, Debug, Default)]
pub struct RunMeta {
    /// The command: `replay`, `simulate`, `sweep`, `plan`.
    pub kind: String,
    /// The command line, as given.
    pub command: String,
    /// plsim's version.
    pub version: String,
    /// The input, in words (a capture's name, a workload).
    pub input: String,
    /// The input's fingerprint (a capture's: the hash of its bytes), if known.
    pub fingerprint: Option<String>,
    /// The scenario as `plsim scenario show` prints it (empty: not shown).
    pub scenario: String,
}

/// The "What ran" section.
fn ran(p: &mut Page, m: &RunMeta) {
    p.section("What ran");
    let mut rows = vec![
        ("command line", m.command.as_str()),
        ("plsim", m.version.as_str()),
        ("input", m.input.as_str()),
    ];
    if let Some(f) = &m.fingerprint {
        rows.push(("input fingerprint", f));
    }
    let rows: Vec<Vec<page::Cell>> = rows
        .into_iter()
        .map(|(k, v)| vec![page::Cell::Head(k.into()), page::Cell::Text(v.into())])
        .collect();
    p.raw(&page::table(&Value::Null, "kv", &rows));
    if !m.scenario.is_empty() {
        p.raw(&format!(
            "<details><summary>The scenario (as <code>plsim scenario show</code> prints it)</summary><pre>{}</pre></details>",
            escape(&m.scenario)
        ));
    }
}

/// One figure of a page: the JSON pointer it is marked with, whether it is a sum
/// (`data-json-sum`), and the text shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    /// The pointer into the document.
    pub pointer: String,
    /// The sum of the numbers of the object there, not the value.
    pub sum: bool,
    /// The text shown, unescaped.
    pub text: String,
}

/// Every figure of a page (its own markup or a browser's rendering of it, `--dump-dom`).
pub fn figures(html: &str) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("data-json") {
        rest = &rest[i + "data-json".len()..];
        let sum = rest.starts_with("-sum");
        let Some(q) = rest.find("=\"") else { break };
        rest = &rest[q + 2..];
        let Some(end) = rest.find('"') else { break };
        let pointer = unescape(&rest[..end]);
        rest = &rest[end..];
        let Some(gt) = rest.find('>') else { break };
        rest = &rest[gt + 1..];
        let Some(close) = rest.find('<') else { break };
        out.push(Figure {
            pointer,
            sum,
            text: unescape(&rest[..close]),
        });
        rest = &rest[close..];
    }
    out
}

/// Text with the entities [`escape`] (and a browser's serializer) writes turned back.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Whether the text of every figure of `html` says the value of `doc` at its pointer (as
/// [`page::shown`] words it: a float to the digits shown). Every disagreement, in words, or
/// none; a page without a figure disagrees.
pub fn check(html: &str, doc: &Value) -> Result<usize, Vec<String>> {
    let figs = figures(html);
    let mut bad = Vec::new();
    if figs.is_empty() {
        bad.push("the page has no figure".to_string());
    }
    for f in &figs {
        let Some(v) = doc.pointer(&f.pointer) else {
            bad.push(format!("{}: not in the document", f.pointer));
            continue;
        };
        let ok = if f.sum {
            f.text == page::sum(Some(v)).to_string()
        } else {
            agrees(&f.text, v)
        };
        if !ok {
            bad.push(format!(
                "{}: the page says {:?}, the document {v}",
                f.pointer, f.text
            ));
        }
    }
    if bad.is_empty() {
        Ok(figs.len())
    } else {
        Err(bad)
    }
}

/// Whether `text` shows `v`: exactly, or for a float, to the last digit shown.
fn agrees(text: &str, v: &Value) -> bool {
    if text == page::shown(v) {
        return true;
    }
    match (v.as_f64(), text.parse::<f64>()) {
        (Some(x), Ok(y)) if !v.is_u64() && !v.is_i64() => {
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            (x - y).abs() <= 0.5 * 10f64.powi(-(decimals as i32)) * (1.0 + 1e-9)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
