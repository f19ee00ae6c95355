//! `plsim scenario check` reports every problem of a file, each with its line: all its type
//! errors (the first no longer hides the others), bytes that are not UTF-8, keys nested past
//! the TOML reader's limit; it refuses a file too large to read; and the files that broke the
//! `scenario` fuzz target (`fuzz/regressions/scenario/`) keep every problem on its line.

mod common;

use std::path::Path;

use common::{plsim, scratch, stderr, stdout};
use plsim_control::Scenario;

/// Writes `bytes` as a scenario file and checks it: exit 1, and the problems' lines.
fn check(dir: &str, bytes: &[u8]) -> Vec<String> {
    let file = scratch(dir).join("s.toml");
    std::fs::write(&file, bytes).unwrap();
    let o = plsim(&["scenario", "check", file.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<String> = err.lines().map(str::to_owned).collect();
    // One problem alone is on the first line; several are listed under it, one a line.
    if lines.len() == 1 {
        let head = format!("plsim: {}: ", file.display());
        vec![lines[0].strip_prefix(&head).expect(&err).to_owned()]
    } else {
        assert!(lines[0].ends_with("problems:"), "{err}");
        lines[1..].iter().map(|l| l.trim().to_owned()).collect()
    }
}

fn builtin() -> String {
    stdout(&plsim(&["scenario", "default"]))
}

/// The 1-based line of the first line of `text` equal to `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines().position(|l| l == line).expect(line) + 1
}

#[test]
fn every_type_error_is_reported_with_its_line() {
    let b = builtin();
    let text = b
        .replacen("seed = 42", "seed = \"x\"", 1)
        .replacen("ip = \"10.10.0.4\"", "ip = 5", 1)
        .replacen(
            "hosts_per_endpoint = 16",
            "hosts_per_endpoint = \"many\"",
            1,
        )
        .replacen(
            "resource_group = \"rg-provider\"",
            "resource_group = \"rg-provider\"\ncolour = \"blue\"",
            1,
        );
    let problems = check("files-types", text.as_bytes());
    assert_eq!(
        problems,
        vec![
            "line 1: seed: invalid type: string \"x\", expected u64".to_owned(),
            format!(
                "line {}: load_balancer.frontends[0].ip: invalid type: integer `5`, expected \
                 IPv4 address",
                line_of(&text, "ip = 5")
            ),
            format!(
                "line {}: services[0].colour: unknown field `colour`, expected one of `name`, \
                 `subscription`, `resource_group`, `region`, `alias_prefix`, `visibility`, \
                 `auto_approval`, `frontend`, `nat_subnet`, `nat_ips`, `ports`, `allocator`, \
                 `reuse`, `selection`, `timers`, `rst_on_exhaustion`, `enable_proxy_protocol`",
                line_of(&text, "colour = \"blue\"")
            ),
            format!(
                "line {}: workload.hosts_per_endpoint: invalid type: string \"many\", expected u32",
                line_of(&text, "hosts_per_endpoint = \"many\"")
            ),
        ]
    );
}

/// A missing key is reported at its table, and a key of the wrong type beside it too; a key
/// taken out to read on is not reported missing.
#[test]
fn missing_and_wrong_keys_of_one_endpoint_are_both_reported() {
    let text = builtin()
        + "\n[[endpoints]]\nname = \"pe-2\"\nsubscription = \"sub-consumer\"\nvnet = \"consumer\"\n\
           target = \"x\"\nconnect = \"yes\"\nprivate_ip = 7\n";
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().rposition(|l| *l == "[[endpoints]]").unwrap() + 1;
    let problems = check("files-missing", text.as_bytes());
    assert_eq!(
        problems,
        vec![
            format!("line {header}: endpoints[1]: missing field `subnet`"),
            format!(
                "line {}: endpoints[1].connect: invalid type: string \"yes\", expected a boolean",
                line_of(&text, "connect = \"yes\"")
            ),
            format!(
                "line {}: endpoints[1].private_ip: invalid type: integer `7`, expected IPv4 address",
                line_of(&text, "private_ip = 7")
            ),
        ]
    );
}

#[test]
fn bytes_that_are_not_utf8_are_reported_with_their_line_and_the_rest_is_read() {
    let mut bytes = builtin().into_bytes();
    let at = bytes.windows(8).position(|w| w == b"seed = 4").unwrap();
    // A Latin-1 name on line 1 of a comment, and a wrong type below it.
    let mut head = b"# caf\xe9\n".to_vec();
    head.extend_from_slice(&bytes[..at]);
    head.extend_from_slice(b"seed = \"x\"\n");
    let nl = bytes[at..].iter().position(|&b| b == b'\n').unwrap();
    head.extend_from_slice(&bytes[at + nl + 1..]);
    bytes = head;
    let problems = check("files-utf8", &bytes);
    assert_eq!(
        problems,
        vec![
            "line 1: column 6 (byte 6 of the file): 0xe9 is not UTF-8: a scenario file is UTF-8 \
             text"
                .to_owned(),
            "line 2: seed: invalid type: string \"x\", expected u64".to_owned(),
        ]
    );
}

#[test]
fn a_key_nested_past_the_readers_limit_has_its_line() {
    let key = vec!["a"; 81].join(".");
    let text = format!("{}\n{key} = 1\n", builtin());
    let line = text.lines().count();
    let problems = check("files-deep", text.as_bytes());
    assert_eq!(
        problems,
        vec![format!(
            "line {line}: recursion limit: a dotted key or table name has more than 80 parts"
        )]
    );
    // Arrays and inline tables nested past it too.
    let text = format!(
        "{}\nx = {}{}\ny = {}1{}\n",
        builtin(),
        "[".repeat(100),
        "]".repeat(100),
        "{z=".repeat(100),
        "}".repeat(100)
    );
    let n = text.lines().count();
    let problems = check("files-deep-values", text.as_bytes());
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("line {}: ", n - 1)),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with(&format!("line {n}: ")),
        "{problems:?}"
    );
}

#[test]
fn a_file_over_16_mib_is_refused_unread() {
    let mut text = builtin();
    let comment = format!("# {}\n", "x".repeat(1000));
    while text.len() <= 16 << 20 {
        text.push_str(&comment);
    }
    let problems = check("files-large", text.as_bytes());
    assert_eq!(
        problems,
        vec!["the file is larger than 16 MiB, the most a scenario file may be".to_owned()]
    );
}

#[test]
fn past_a_hundred_problems_one_line_says_there_are_more() {
    let mut text = builtin();
    for i in 0..150 {
        text.push_str(&format!(
            "\n[[timeline]]\nat = {i}\naction = \"approve\"\nendpoint = \"pe-{i}\"\n"
        ));
    }
    let problems = check("files-many", text.as_bytes());
    assert_eq!(problems.len(), 101, "{problems:?}");
    assert!(
        problems[100].contains("more problems from here on"),
        "{}",
        problems[100]
    );
}

/// What the `scenario` fuzz target asks of every input, on each file that once broke it (CI's
/// fuzz runs replay them too; this replays them in every `cargo test`).
#[test]
fn the_files_that_broke_the_scenario_fuzz_target_keep_every_problem_on_its_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/scenario");
    let mut seen = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let path = f.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.is_empty() {
            continue; // the directory's keeper
        }
        seen += 1;
        match Scenario::from_toml_bytes(&bytes) {
            Ok(s) => assert_eq!(Scenario::from_toml_str(&s.to_toml()).unwrap(), s),
            Err(problems) => {
                for p in &problems.0 {
                    assert!(p.line.is_some(), "{}: {p}", path.display());
                    assert!(!p.message.is_empty(), "{}", path.display());
                }
            }
        }
    }
    assert!(seen >= 4, "the regressions are there: {seen}");
}
