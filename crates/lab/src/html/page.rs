//! The page around a report: the shell (inline CSS, a policy that forbids fetching anything),
//! escaping, and the tables whose figures are cells of a JSON document (`data-json`).

use std::fmt::Write as _;

use serde_json::Value;

/// Text made safe for HTML (element text and quoted attribute values).
pub fn escape(text: &str) -> String {
    let mut o = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The inline style sheet: readable on screen and in print, no web font.
const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;\
padding:1em 1.5em;color:#1d2330;background:#fff}h1{font-size:1.5em;margin:.3em 0}\
h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #d5d9e0}\
table{border-collapse:collapse;margin:.4em 0;font-variant-numeric:tabular-nums}\
th,td{padding:.15em .6em;border-bottom:1px solid #eceef2;text-align:left;vertical-align:top}\
td.n{text-align:right}th{background:#f3f5f8;font-weight:600}\
.wide{overflow-x:auto}.note{color:#5b6475}pre{background:#f6f7f9;padding:.6em;overflow-x:auto;\
font-size:12px}.head td{font-size:1.05em}.bad{color:#b3261e;font-weight:600}\
svg{display:block;margin:.3em 0;max-width:100%;height:auto}\
.plots{display:flex;flex-wrap:wrap;gap:1em}";

/// A report being written: sections of tables, plots and text, then [`Page::finish`].
pub struct Page {
    body: String,
}

impl Page {
    /// A page titled `title`.
    pub fn new(title: &str) -> Page {
        let mut body = String::new();
        let _ = writeln!(body, "<h1>{}</h1>", escape(title));
        Page { body }
    }

    /// A section heading.
    pub fn section(&mut self, title: &str) {
        let _ = writeln!(self.body, "<h2>{}</h2>", escape(title));
    }

    /// A line of text (escaped), with a class (`note`, `bad`) or none.
    pub fn text(&mut self, class: &str, text: &str) {
        let _ = writeln!(self.body, "<p class=\"{class}\">{}</p>", escape(text));
    }

    /// Preformatted text (escaped).
    pub fn pre(&mut self, text: &str) {
        let _ = writeln!(self.body, "<pre>{}</pre>", escape(text));
    }

    /// Markup made elsewhere in this module (plots, tables), as it is.
    pub fn raw(&mut self, markup: &str) {
        self.body.push_str(markup);
        self.body.push('\n');
    }

    /// The whole page: a self-contained HTML document.
    pub fn finish(self, title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'; img-src data:\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{CSS}</style></head>\n<body>\n{}</body></html>\n",
            escape(title),
            self.body
        )
    }
}

/// One cell of a table: a header, a text, or a figure of the JSON document.
pub enum Cell {
    /// A header cell (`th`).
    Head(String),
    /// Text (escaped).
    Text(String),
    /// The value at this JSON pointer of the report's document, shown as [`shown`] words it.
    Json(String),
    /// The sum of the numbers of the object at this JSON pointer (every drop of every reason).
    Sum(String),
}

/// A table of rows of cells, each figure taken from `doc` by its pointer.
pub fn table(doc: &Value, class: &str, rows: &[Vec<Cell>]) -> String {
    let mut o = format!("<div class=\"wide\"><table class=\"{class}\">\n");
    for row in rows {
        o.push_str("<tr>");
        for c in row {
            o.push_str(&cell(doc, c));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table></div>");
    o
}

/// One cell's markup.
fn cell(doc: &Value, c: &Cell) -> String {
    match c {
        Cell::Head(h) => format!("<th>{}</th>", escape(h)),
        Cell::Text(t) => format!("<td>{}</td>", escape(t)),
        Cell::Json(p) => {
            let v = doc.pointer(p).unwrap_or(&Value::Null);
            let class = if v.is_number() { " class=\"n\"" } else { "" };
            format!(
                "<td{class} data-json=\"{}\">{}</td>",
                escape(p),
                escape(&shown(v))
            )
        }
        Cell::Sum(p) => format!(
            "<td class=\"n\" data-json-sum=\"{}\">{}</td>",
            escape(p),
            sum(doc.pointer(p))
        ),
    }
}

/// The sum of an object's integers (0 for anything else).
pub fn sum(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_object)
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// A JSON value as a table shows it: integers and strings as they are, `true`/`false` as
/// yes/no, null as a dash, other numbers to four significant digits (at least the units).
pub fn shown(v: &Value) -> String {
    match v {
        Value::Null => "\u{2014}".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => float(n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}

/// A float to four significant digits, or with no decimals from 1,000 on.
pub fn float(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = 3 - x.abs().log10().floor() as i32;
    format!("{x:.*}", digits.clamp(0, 12) as usize)
}

/// Every leaf of `v` under `base` (a JSON pointer), in the document's order: its pointer and
/// value. Pointers escape `~` and `/` in keys as RFC 6901 says.
pub fn leaves<'a>(v: &'a Value, base: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(x, &format!("{base}/{}", pointer_key(k)), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, &format!("{base}/{i}"), out);
            }
        }
        leaf => out.push((base.to_string(), leaf)),
    }
}

/// A key as a JSON pointer's token.
pub fn pointer_key(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// A table of the objects of the array at `base` in `doc`, one row each (at most those of
/// `rows`, indices into the array), a column per leaf key (nested objects flattened as
/// `outer/inner`): `first` first in that order, then the rest as the document has them.
/// Columns `hide` returns true for are left out.
pub fn objects(
    doc: &Value,
    base: &str,
    rows: &[usize],
    first: &[&str],
    hide: &dyn Fn(&str) -> bool,
) -> String {
    let Some(items) = doc.pointer(base).and_then(Value::as_array) else {
        return String::new();
    };
    let mut cols: Vec<String> = first.iter().map(|s| (*s).to_string()).collect();
    for item in items {
        let mut l = Vec::new();
        leaves(item, "", &mut l);
        for (p, _) in l {
            let key = p.trim_start_matches('/').to_string();
            if !cols.contains(&key) {
                cols.push(key);
            }
        }
    }
    let present = |c: &str| items.iter().any(|i| i.pointer(&format!("/{c}")).is_some());
    cols.retain(|c| present(c) && !hide(c));
    let mut table_rows = vec![
        cols.iter()
            .map(|c| Cell::Head(c.replace('_', " ")))
            .collect(),
    ];
    for &i in rows {
        table_rows.push(
            cols.iter()
                .map(|c| Cell::Json(format!("{base}/{i}/{c}")))
                .collect(),
        );
    }
    table(doc, "rows", &table_rows)
}
