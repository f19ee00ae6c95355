//! Reading a scenario file: its bytes to a [`Scenario`], or every problem of it with its line.
//!
//! Four passes, each reporting every problem it finds: bytes that are not UTF-8 (each run of
//! them, with its line; the rest of the file is read with them replaced, so its problems are
//! found too); the TOML syntax (every error the parser recovers from, a key nested past its
//! limit included); the types (every value of the wrong type, unknown key and missing key:
//! each is taken out of the file in turn and the rest read again, the elements of the long
//! lists each on its own); then the scenario's rules. Each pass runs when the one before found
//! nothing (but the UTF-8 one, after which the others still do). At most [`MAX_PROBLEMS`] are
//! listed, in line order; a file over [`MAX_FILE_BYTES`] is not read.

use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue, ValueDeserializer};

use crate::plane::{Path, Seg};
use crate::scenario::{Endpoint, Event, Scenario, Service, Vnet};
use crate::validate::{self, Problem, Problems, path_string};

/// The largest scenario file read, in bytes: 16 MiB, some 80,000 endpoints of 200 bytes, far
/// past Azure's own limits (1,000 private endpoints a VNet, 64,000 a subscription). Reading
/// one takes about 15 times its size in memory (the text, its TOML tree, the scenario, the
/// control plane built to check it: 235 MB and a second for 15 MB of endpoints); a larger file
/// is refused unread.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// The most problems listed for one file; past them, one more line says there are more.
pub const MAX_PROBLEMS: usize = 100;

/// How many times one value is read again after taking out what was wrong with it.
const MAX_RETRIES: usize = 64;

/// The lists of a scenario that grow with it: each element's types are checked on its own.
const LISTS: [&str; 4] = ["vnets", "services", "endpoints", "timeline"];

/// A file's bytes to its scenario, or every problem (see the [module](self) docs).
pub(crate) fn bytes(bytes: &[u8]) -> Result<Scenario, Problems> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let (text, mut problems) = utf8(bytes);
    match text_problems(&text) {
        Ok(s) if problems.is_empty() => Ok(s),
        Ok(_) => Err(listed(problems)),
        Err(more) => {
            problems.extend(more);
            Err(listed(problems))
        }
    }
}

/// A file's text to its scenario, or every problem (see the [module](self) docs).
pub(crate) fn text(text: &str) -> Result<Scenario, Problems> {
    if text.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    text_problems(text).map_err(listed)
}

fn too_large() -> Problems {
    Problems(vec![Problem {
        path: String::new(),
        line: None,
        message: format!(
            "the file is larger than {} MiB, the most a scenario file may be",
            MAX_FILE_BYTES >> 20
        ),
    }])
}

/// The problems in line order (a stable sort: discovery order on a line), at most
/// [`MAX_PROBLEMS`] of them and a line saying there are more.
fn listed(mut problems: Vec<Problem>) -> Problems {
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    if problems.len() > MAX_PROBLEMS {
        let line = problems[MAX_PROBLEMS].line;
        problems.truncate(MAX_PROBLEMS);
        problems.push(Problem {
            path: String::new(),
            line,
            message: format!(
                "more problems from here on: the first {MAX_PROBLEMS} are listed, fix them first"
            ),
        });
    }
    Problems(problems)
}

/// The text of `bytes` (each sequence that is not UTF-8 replaced by U+FFFD, which keeps every
/// line where it was), and a problem for each line that has such bytes.
fn utf8(bytes: &[u8]) -> (String, Vec<Problem>) {
    // Per line with such bytes: where the first is, and the first few of them.
    let mut bad_lines: Vec<(usize, usize, usize, Vec<u8>)> = Vec::new();
    let (mut line, mut col, mut at) = (1usize, 1usize, 0usize);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        at += chunk.valid().len();
        let bad = chunk.invalid();
        if bad.is_empty() {
            continue;
        }
        let listed = bad_lines.len();
        match bad_lines.last_mut() {
            Some((l, _, _, shown)) if *l == line => {
                shown.extend(bad.iter().take(9usize.saturating_sub(shown.len())));
            }
            // Past the problems listed, the rest is only read.
            _ if listed > MAX_PROBLEMS => {}
            _ => bad_lines.push((line, col, at + 1, bad.to_vec())),
        }
        at += bad.len();
        col += 1;
    }
    let problems = bad_lines
        .into_iter()
        .map(|(line, col, byte, shown)| {
            let mut hex: Vec<String> = shown.iter().take(8).map(|b| format!("{b:#04x}")).collect();
            if shown.len() > 8 {
                hex.push("...".into());
            }
            Problem {
                path: String::new(),
                line: Some(line),
                message: format!(
                    "column {col} (byte {byte} of the file): {} not UTF-8: a scenario file is \
                     UTF-8 text",
                    hex.join(" ") + if shown.len() > 1 { " are" } else { " is" }
                ),
            }
        })
        .collect();
    (String::from_utf8_lossy(bytes).into_owned(), problems)
}

/// The problems of a text, pass after pass.
fn text_problems(text: &str) -> Result<Scenario, Vec<Problem>> {
    let lines = LineIndex::new(text);
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(syntax_problems(text, &lines, &errors));
    }
    let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
    let spans = Spans { lines, root };
    let scenario = match Scenario::deserialize(ValueDeserializer::from(spans.root.clone())) {
        Ok(s) => s,
        Err(_) => return Err(type_problems(&spans)),
    };
    let found = validate::problems(&scenario);
    if found.is_empty() {
        return Ok(scenario);
    }
    Err(found
        .into_iter()
        .map(|(path, message)| Problem {
            line: spans.line(&path),
            path: path_string(&path),
            message,
        })
        .collect())
}

/// Every syntax error, with its line. The parser gives every error a place but one: a key of
/// more than 80 parts. A key is on one line, and the line alone makes the same error: the lines
/// of enough dots that do, in order, are those errors' lines.
fn syntax_problems(text: &str, lines: &LineIndex, errors: &[toml::de::Error]) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut placeless = Vec::new();
    // In file order: the first ones are those listed.
    for e in errors.iter().take(MAX_PROBLEMS + 1) {
        let message = match e.message().trim() {
            // The parser's words for a dotted key or table name of more than 80 parts.
            "recursion limit" => {
                "recursion limit: a dotted key or table name has more than 80 parts".to_owned()
            }
            m => m.to_owned(),
        };
        match e.span() {
            Some(span) => out.push(Problem {
                path: String::new(),
                line: Some(lines.line_of(span.start)),
                message,
            }),
            None => placeless.push(message),
        }
    }
    if !placeless.is_empty() {
        let mut deep = text.lines().enumerate().filter_map(|(i, line)| {
            let placeless = |l: &str| {
                let (_, errors) = DeTable::parse_recoverable(l);
                errors.iter().any(|e| e.span().is_none())
            };
            (line.matches('.').count() >= 80 && placeless(line)).then_some(i + 1)
        });
        for message in placeless {
            out.push(Problem {
                path: String::new(),
                // None found (a line alone that reads otherwise): the last line.
                line: Some(deep.next().unwrap_or(lines.count())),
                message,
            });
        }
    }
    out
}

/// A problem of the types: its place in the text, its path and what is wrong.
type Found = Vec<(Range<usize>, Path, String)>;

/// Every type problem of a file whose syntax is right, with its path and line.
fn type_problems(spans: &Spans) -> Vec<Problem> {
    let mut found: Found = Vec::new();
    let DeValue::Table(table) = spans.root.get_ref() else {
        unreachable!("a document is a table");
    };
    let mut rest = table.clone();
    for list in LISTS {
        let Some(DeValue::Array(items)) = table.get(list).map(Spanned::get_ref) else {
            continue; // not a list: the rest says so
        };
        for (i, item) in items.iter().enumerate() {
            let at = vec![Seg::Key(list), Seg::Index(i)];
            match list {
                "vnets" => collect::<Vnet>(item, at, &mut found),
                "services" => collect::<Service>(item, at, &mut found),
                "endpoints" => collect::<Endpoint>(item, at, &mut found),
                _ => collect::<Event>(item, at, &mut found),
            }
        }
        if let Some(v) = rest.get_mut(list) {
            *v.get_mut() = DeValue::Array(DeArray::new());
        }
    }
    let rest = Spanned::new(spans.root.span(), DeValue::Table(rest));
    collect::<Scenario>(&rest, Vec::new(), &mut found);
    found
        .into_iter()
        .map(|(span, path, message)| Problem {
            // About the file as a whole (a table it lacks): its first line.
            line: Some(if path.is_empty() {
                1
            } else {
                spans.lines.line_of(span.start)
            }),
            path: path_string(&path),
            message,
        })
        .collect()
}

/// Reads `value` (at `path` in the file) as a `T`; on an error, notes it, takes out of the
/// value what it is about (a key, an element, a table that lacks a key), and reads again. A
/// key found missing that was taken out is not noted: taking it out made it missing.
fn collect<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>, path: Path, found: &mut Found) {
    let mut v = value.clone();
    let mut taken: Vec<(Range<usize>, String)> = Vec::new();
    for _ in 0..MAX_RETRIES {
        if found.len() > MAX_PROBLEMS {
            return;
        }
        let Err(e) = T::deserialize(ValueDeserializer::from(v.clone())) else {
            return;
        };
        let span = e.span().unwrap_or_else(|| v.span());
        let message = e.message().trim().to_owned();
        let made = taken
            .iter()
            .any(|(t, key)| *t == span && message == format!("missing field `{key}`"));
        if !made {
            let mut at = path.clone();
            at.extend(locate(value, &span).unwrap_or_default());
            found.push((span.clone(), at, message));
        }
        let Some(place) = locate(&v, &span) else {
            return; // the value itself: nothing left to read
        };
        taken.push(take_out(&mut v, &place));
    }
}

/// The path, within `node`, of the deepest entry (a table's key and its value, or an array's
/// element) whose key or value has exactly `span`.
fn locate(node: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<Path> {
    let (deeper, here): (Option<Path>, Option<Seg>) = match node.get_ref() {
        DeValue::Table(t) => {
            let name = |k: &Spanned<toml::de::DeString<'_>>| Seg::Name(k.get_ref().to_string());
            let deeper = t.iter().find_map(|(k, v)| {
                let mut p = vec![name(k)];
                p.extend(locate(v, span)?);
                Some(p)
            });
            let here = t
                .iter()
                .find(|(k, v)| k.span() == *span || v.span() == *span)
                .map(|(k, _)| name(k));
            (deeper, here)
        }
        DeValue::Array(a) => {
            let deeper = a.iter().enumerate().find_map(|(i, v)| {
                let mut p = vec![Seg::Index(i)];
                p.extend(locate(v, span)?);
                Some(p)
            });
            let here = a.iter().position(|v| v.span() == *span).map(Seg::Index);
            (deeper, here)
        }
        _ => (None, None),
    };
    deeper.or_else(|| here.map(|s| vec![s]))
}

/// Takes the entry at `place` out of `node`; gives the span of the table or array it was in
/// and its key (empty for an element).
fn take_out(node: &mut Spanned<DeValue<'_>>, place: &[Seg]) -> (Range<usize>, String) {
    let (last, parents) = place.split_last().expect("a place in the value");
    let mut here = node;
    for seg in parents {
        here = match (here.get_mut(), seg) {
            (DeValue::Table(t), Seg::Name(k)) => t
                .iter_mut()
                .find(|(key, _)| key.get_ref() == k)
                .map(|(_, v)| v)
                .expect("located"),
            (DeValue::Array(a), Seg::Index(i)) => a.get_mut(*i).expect("located"),
            _ => unreachable!("a located place"),
        };
    }
    let span = here.span();
    match (here.get_mut(), last) {
        (DeValue::Table(t), Seg::Name(k)) => {
            let key = t.keys().find(|key| key.get_ref() == k).cloned();
            if let Some(key) = key {
                t.remove(&key);
            }
            (span, k.clone())
        }
        (DeValue::Array(a), Seg::Index(i)) => {
            let mut kept = DeArray::new();
            for (j, v) in std::mem::replace(a, DeArray::new()).iter().enumerate() {
                if j != *i {
                    kept.push(v.clone());
                }
            }
            *a = kept;
            (span, String::new())
        }
        _ => unreachable!("a located place"),
    }
}

/// Where each line of a text starts.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    /// The 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset.min(self.len))
    }

    /// How many lines (a last line without its newline counts).
    fn count(&self) -> usize {
        self.line_of(self.len)
    }
}
/// Places in a parsed file: the line of a path, the path at an offset.
pub(crate) struct Spans<'a> {
    lines: LineIndex,
    root: Spanned<DeValue<'a>>,
}

impl<'a> Spans<'a> {
    /// The line of the deepest part of `path` present in the file.
    pub(crate) fn line(&self, path: &[Seg]) -> Option<usize> {
        let mut node = &self.root;
        let mut span = None;
        for seg in path {
            let next = match seg {
                Seg::Key(key) => node.get_ref().get(*key),
                Seg::Name(key) => node.get_ref().get(key.as_str()),
                Seg::Index(i) => node.get_ref().get(*i),
            };
            match next {
                Some(n) => {
                    node = n;
                    if !n.span().is_empty() {
                        span = Some(n.span());
                    }
                }
                None => break,
            }
        }
        span.map(|s| self.lines.line_of(s.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str) -> Vec<Option<usize>> {
        match bytes(text.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(p) => p.0.iter().map(|p| p.line).collect(),
        }
    }

    #[test]
    fn keys_nested_past_the_limit_each_have_their_line() {
        let deep = |k: &str| vec![k; 85].join(".");
        let text = format!(
            "seed = 1\n{} = 1\n# {}\n[{}]\nx = [\n  {{ {} = 2 }},\n]\n",
            deep("a"),
            deep("comment"),
            deep("t"),
            deep("b")
        );
        let (_, errors) = DeTable::parse_recoverable(&text);
        let placeless = errors.iter().filter(|e| e.span().is_none()).count();
        assert!(placeless >= 1, "{errors:?}");
        let lines = lines_of(&text);
        assert!(lines.iter().all(Option::is_some), "{lines:?}");
        // The deep keys are on lines 2, 4 and 6, never the comment's line 3.
        for l in lines.iter().flatten() {
            assert!([2, 4, 6].contains(l), "{lines:?}");
        }
    }

    #[test]
    fn not_utf8_bytes_are_listed_once_a_line_a_few_of_them() {
        let mut text = b"seed = 1\n# ".to_vec();
        text.extend([0xff; 20]);
        text.extend(b"\n# \xc3\n");
        let p = bytes(&text).unwrap_err().0;
        // And the rest is read: it lacks its load balancer.
        assert_eq!(p[0].message, "missing field `load_balancer`");
        let p = &p[1..];
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].line, Some(2));
        assert_eq!(
            p[0].message,
            "column 3 (byte 12 of the file): 0xff 0xff 0xff 0xff 0xff 0xff 0xff 0xff ... are not \
             UTF-8: a scenario file is UTF-8 text"
        );
        assert_eq!(p[1].line, Some(3));
    }
}
