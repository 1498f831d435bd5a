//! Parsers for the uci file syntax (`/etc/config/*`, `uci export`) and for the
//! line formats `uci show` and `uci changes` print.
//!
//! The file parser follows libuci's own parser (`file.c`) step by step, quirks
//! included, so it accepts and rejects exactly what the real tool does in its
//! default strict mode: `package`/`config`/`option`/`list` and their one-letter
//! forms, `#` comments, single quotes (no escapes), double quotes and bare words
//! (backslash escapes the next character, backslash-newline continues the line),
//! quoted values spanning lines, `;` between commands, named sections merging on
//! redeclaration, a `list` turning a plain option into a list, and an `option` with
//! an empty value being ignored.

use std::fmt;

/// A uci option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `option NAME 'VALUE'`
    Single(String),
    /// One or more `list NAME 'VALUE'` lines.
    List(Vec<String>),
}

impl Value {
    /// The value of a plain option; `None` for a list.
    pub fn as_single(&self) -> Option<&str> {
        match self {
            Value::Single(v) => Some(v),
            Value::List(_) => None,
        }
    }

    /// All values: one for a plain option, every element for a list.
    pub fn values(&self) -> Vec<&str> {
        match self {
            Value::Single(v) => vec![v.as_str()],
            Value::List(l) => l.iter().map(String::as_str).collect(),
        }
    }
}

/// One `config` section of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type (`interface`, `wireguard_wg0`, ...).
    pub stype: String,
    /// The section name; `None` for an anonymous section.
    pub name: Option<String>,
    /// Position among the sections of the same type (named ones included), as
    /// used by `@type[index]` addressing.
    pub index: usize,
    /// Options in uci's order.
    pub options: Vec<(String, Value)>,
}

impl Section {
    /// A new empty section; `index` is filled in by [`reindex`].
    pub fn new(stype: &str, name: Option<&str>) -> Self {
        Section {
            stype: stype.to_string(),
            name: name.map(str::to_string),
            index: 0,
            options: Vec::new(),
        }
    }

    /// The value of option `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.options.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The value of plain option `name` (`None` when absent or a list).
    pub fn get_single(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_single)
    }

    /// How `uci show` names this section: its name, or `@type[index]`.
    pub fn reference(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("@{}[{}]", self.stype, self.index),
        }
    }

    /// Whether `reference` (a name or `@type[n]`, `n` negative counting from the
    /// end) designates this section within `all`.
    fn matches(&self, all: &[Section], reference: &str) -> bool {
        match parse_type_index(reference) {
            Some((stype, idx)) => {
                if stype != self.stype {
                    return false;
                }
                let count = all.iter().filter(|s| s.stype == stype).count() as i64;
                let idx = if idx < 0 { count + idx } else { idx };
                idx >= 0 && idx == self.index as i64
            }
            None => self.name.as_deref() == Some(reference),
        }
    }
}

/// Recomputes every section's `index` (position among sections of its type).
pub fn reindex(sections: &mut [Section]) {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for s in sections.iter_mut() {
        match seen.iter_mut().find(|(t, _)| *t == s.stype) {
            Some((_, n)) => {
                s.index = *n;
                *n += 1;
            }
            None => {
                s.index = 0;
                seen.push((s.stype.clone(), 1));
            }
        }
    }
}

/// Position in `sections` of the section named by `reference`: a section name or
/// `@type[n]` (negative `n` counts from the end, as in uci).
pub fn find_section_index(sections: &[Section], reference: &str) -> Option<usize> {
    sections.iter().position(|s| s.matches(sections, reference))
}

/// The section named by `reference` (see [`find_section_index`]).
pub fn find_section<'a>(sections: &'a [Section], reference: &str) -> Option<&'a Section> {
    find_section_index(sections, reference).map(|i| &sections[i])
}

/// Splits `@type[n]` into its type and index.
pub fn parse_type_index(reference: &str) -> Option<(&str, i64)> {
    let rest = reference.strip_prefix('@')?;
    let (stype, idx) = rest.strip_suffix(']')?.split_once('[')?;
    if !is_valid_type(stype) {
        return None;
    }
    let n: i64 = idx.parse().ok()?;
    Some((stype, n))
}

/// uci's rule for section and option names: letters, digits and `_`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// uci's rule for package names: letters, digits, `_` and `-`.
pub fn is_valid_package(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// uci's rule for section types: printable ASCII without spaces.
pub fn is_valid_type(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| (33..=126).contains(&c))
}

/// A value in uci's single quotes, `'` written as `'\''` (as `uci show` does).
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// A parse error: where, what is wrong, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file (or command output) being parsed.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
    /// What the parser expected instead.
    pub expected: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}; expected {}",
            self.file, self.line, self.problem, self.expected
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses a uci config file (or `uci export` output for one package). `file` only
/// labels errors.
pub fn parse_config(file: &str, text: &str) -> Result<Vec<Section>, ParseError> {
    let mut p = FileParser {
        file,
        rest: text,
        buf: Vec::new(),
        pos: 0,
        line: 0,
        sections: Vec::new(),
        current: None,
    };
    while !p.rest.is_empty() {
        p.pos = 0;
        p.getln(0);
        if p.at(0) != 0 {
            p.parse_line()?;
        }
    }
    let mut sections: Vec<Section> = p.sections.into_iter().map(|b| b.section).collect();
    reindex(&mut sections);
    Ok(sections)
}

struct Building {
    section: Section,
    /// libuci keeps a fresh section's type inline; redeclaring the section moves
    /// it out, and a second redeclaration then leaves no current section.
    type_inline: bool,
}

/// A port of libuci's line parser: a line buffer in which parsed arguments are
/// unquoted and NUL-terminated in place, which is what gives `;` and `#` their
/// exact meaning.
struct FileParser<'a> {
    file: &'a str,
    rest: &'a str,
    buf: Vec<u8>,
    pos: usize,
    line: usize,
    sections: Vec<Building>,
    current: Option<usize>,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl FileParser<'_> {
    fn error(&self, problem: impl Into<String>, expected: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line: self.line.max(1),
            problem: problem.into(),
            expected: expected.into(),
        }
    }

    /// Reads the next input line into the buffer at `offset`.
    fn getln(&mut self, offset: usize) {
        self.buf.truncate(offset);
        if self.rest.is_empty() {
            return;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        self.buf.extend_from_slice(&self.rest.as_bytes()[..end]);
        self.rest = &self.rest[end..];
        self.line += 1;
    }

    fn at(&self, i: usize) -> u8 {
        self.buf.get(i).copied().unwrap_or(0)
    }

    fn cur(&self) -> u8 {
        self.at(self.pos)
    }

    fn put(&mut self, i: usize, c: u8) {
        if let Some(b) = self.buf.get_mut(i) {
            *b = c;
        }
    }

    /// The NUL-terminated string starting at `i`.
    fn str_at(&self, i: usize) -> String {
        let tail = self.buf.get(i..).unwrap_or(&[]);
        let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
        String::from_utf8_lossy(&tail[..end]).into_owned()
    }

    fn addc(&mut self, target: &mut usize) {
        let c = self.cur();
        self.put(*target, c);
        *target += 1;
        self.pos += 1;
    }

    fn skip_whitespace(&mut self) {
        while self.cur() != 0 && is_space(self.cur()) {
            self.pos += 1;
        }
    }

    /// At a backslash: skips it; at the end of a line, joins the next line and
    /// returns false (nothing to copy).
    fn backslash(&mut self) -> bool {
        self.pos += 1;
        let c = self.cur();
        if c == 0
            || c == b'\n'
            || (c == b'\r' && self.at(self.pos + 1) == b'\n' && self.at(self.pos + 2) == 0)
        {
            self.getln(self.pos);
            return false;
        }
        true
    }

    fn double_quote(&mut self, target: &mut usize) -> Result<(), ParseError> {
        let start = self.line;
        self.pos += 1;
        loop {
            match self.cur() {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.getln(self.pos);
                    if self.cur() == 0 {
                        return Err(self.error(
                            format!(
                                "end of file inside a double-quoted string opened on line {start}"
                            ),
                            "a closing \"",
                        ));
                    }
                }
                b'\\' => {
                    if self.backslash() {
                        self.addc(target);
                    }
                }
                _ => self.addc(target),
            }
        }
    }

    fn single_quote(&mut self, target: &mut usize) -> Result<(), ParseError> {
        let start = self.line;
        self.pos += 1;
        loop {
            match self.cur() {
                b'\'' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.getln(self.pos);
                    if self.cur() == 0 {
                        return Err(self.error(
                            format!(
                                "end of file inside a single-quoted string opened on line {start}"
                            ),
                            "a closing '",
                        ));
                    }
                }
                _ => self.addc(target),
            }
        }
    }

    /// One argument, unquoted in place from `target` on and NUL-terminated.
    fn parse_str(&mut self, target: &mut usize) -> Result<(), ParseError> {
        let mut next = true;
        loop {
            match self.cur() {
                b'\'' => self.single_quote(target)?,
                b'"' => self.double_quote(target)?,
                b'#' => {
                    self.put(self.pos, 0);
                    break;
                }
                0 => break,
                b';' => {
                    next = false;
                    break;
                }
                b'\\' => {
                    if self.backslash() {
                        self.addc(target);
                    }
                }
                _ => self.addc(target),
            }
            let c = self.cur();
            if c == 0 || is_space(c) {
                break;
            }
        }
        if self.cur() != 0 && next {
            self.pos += 1;
        }
        self.put(*target, 0);
        Ok(())
    }

    /// The next argument; `what` names it in errors.
    fn next_arg(
        &mut self,
        required: bool,
        check: NameCheck,
        what: &str,
    ) -> Result<String, ParseError> {
        self.skip_whitespace();
        let val = self.pos;
        let mut target = self.pos;
        if self.cur() == b';' {
            self.put(self.pos, 0);
            self.pos += 1;
        } else {
            self.parse_str(&mut target)?;
        }
        let s = self.str_at(val);
        if s.is_empty() {
            if required {
                return Err(self.error(format!("missing {what}"), format!("a {what}")));
            }
            return Ok(s);
        }
        let ok = match check {
            NameCheck::None => true,
            NameCheck::Name => is_valid_name(&s),
            NameCheck::Package => is_valid_package(&s),
        };
        if !ok {
            let allowed = match check {
                NameCheck::Package => "letters, digits, '_' and '-'",
                _ => "letters, digits and '_'",
            };
            return Err(self.error(
                format!("invalid {what} '{s}'"),
                format!("a {what} of {allowed} only"),
            ));
        }
        Ok(s)
    }

    fn assert_eol(&mut self) -> Result<(), ParseError> {
        self.skip_whitespace();
        let extra = self.next_arg(false, NameCheck::None, "argument")?;
        if !extra.is_empty() {
            return Err(self.error(
                format!("unexpected extra argument '{extra}'"),
                "end of line",
            ));
        }
        Ok(())
    }

    /// Skips past the command word ending at `end` (libuci's `uci_increase_pos`).
    fn skip_command(
        &mut self,
        end: usize,
        command: &str,
        expected: &str,
    ) -> Result<(), ParseError> {
        if end + 1 > self.buf.len() {
            return Err(self.error(
                format!("'{command}' at end of file without arguments"),
                expected.to_string(),
            ));
        }
        self.pos = end + 1;
        Ok(())
    }

    fn parse_line(&mut self) -> Result<(), ParseError> {
        self.skip_whitespace();
        loop {
            // strtok(cur, " \t")
            let mut start = self.pos;
            while matches!(self.at(start), b' ' | b'\t') {
                start += 1;
            }
            if self.at(start) == 0 {
                return Ok(());
            }
            let mut end = start;
            while !matches!(self.at(end), 0 | b' ' | b'\t') {
                end += 1;
            }
            let word = self.buf[start..end].to_vec();
            self.put(end, 0);
            match word.as_slice() {
                [b'#', ..] => return Ok(()),
                b"p" | b"package" => self.parse_package(end)?,
                b"c" | b"config" => self.parse_section(end)?,
                b"o" | b"option" => self.parse_option(end, false)?,
                b"l" | b"list" => self.parse_option(end, true)?,
                _ => {
                    let shown = String::from_utf8_lossy(&word);
                    let shown = shown.trim_end_matches(['\r', '\n']);
                    if shown.is_empty() {
                        return Err(self.error(
                            "';' at the end of a line",
                            "another command after ';' or no ';'",
                        ));
                    }
                    if matches!(
                        shown,
                        "p" | "package" | "c" | "config" | "o" | "option" | "l" | "list"
                    ) {
                        return Err(self.error(
                            format!("'{shown}' without arguments"),
                            "its arguments on the same line",
                        ));
                    }
                    return Err(self.error(
                        format!("invalid command '{}'", shown.escape_default()),
                        "'config', 'option', 'list', 'package' or a '#' comment",
                    ));
                }
            }
        }
    }

    fn parse_package(&mut self, end: usize) -> Result<(), ParseError> {
        self.skip_command(end, "package", "a package name")?;
        self.next_arg(true, NameCheck::Package, "package name")?;
        self.assert_eol()
    }

    fn parse_section(&mut self, end: usize) -> Result<(), ParseError> {
        self.skip_command(end, "config", "a section type")?;
        let stype = self.next_arg(true, NameCheck::None, "section type")?;
        if !is_valid_type(&stype) {
            return Err(self.error(
                format!("invalid section type '{}'", stype.escape_default()),
                "a section type of printable characters without spaces",
            ));
        }
        let name = self.next_arg(false, NameCheck::Name, "section name")?;
        self.assert_eol()?;
        if name.is_empty() {
            self.sections.push(Building {
                section: Section::new(&stype, None),
                type_inline: true,
            });
            self.current = Some(self.sections.len() - 1);
            return Ok(());
        }
        match self
            .sections
            .iter()
            .position(|b| b.section.name.as_deref() == Some(name.as_str()))
        {
            Some(i) => {
                if self.sections[i].section.stype != stype {
                    return Err(self.error(
                        format!(
                            "section '{name}' redeclared with type '{stype}' (was '{}')",
                            self.sections[i].section.stype
                        ),
                        format!(
                            "type '{}' or a different section name",
                            self.sections[i].section.stype
                        ),
                    ));
                }
                if self.sections[i].type_inline {
                    self.sections[i].type_inline = false;
                    self.current = Some(i);
                } else {
                    // libuci loses track of the section here: options that follow
                    // fail as if no section had been opened.
                    self.current = None;
                }
            }
            None => {
                self.sections.push(Building {
                    section: Section::new(&stype, Some(&name)),
                    type_inline: true,
                });
                self.current = Some(self.sections.len() - 1);
            }
        }
        Ok(())
    }

    fn parse_option(&mut self, end: usize, list: bool) -> Result<(), ParseError> {
        let command = if list { "list" } else { "option" };
        let Some(cur) = self.current else {
            return Err(self.error(
                format!("'{command}' outside a section (libuci also rejects options after a section's second redeclaration)"),
                "a 'config TYPE [NAME]' line first",
            ));
        };
        self.skip_command(end, command, "an option name")?;
        let name = self.next_arg(true, NameCheck::Name, "option name")?;
        let value = self.next_arg(false, NameCheck::None, "value")?;
        self.assert_eol()?;
        let options = &mut self.sections[cur].section.options;
        let existing = options.iter().position(|(n, _)| *n == name);
        if list {
            match existing {
                Some(i) => {
                    if let Value::List(l) = &mut options[i].1 {
                        l.push(value);
                    } else {
                        // A plain option becomes a list, moved to the end.
                        let (_, old) = options.remove(i);
                        let Value::Single(old) = old else {
                            unreachable!()
                        };
                        options.push((name, Value::List(vec![old, value])));
                    }
                }
                None => options.push((name, Value::List(vec![value]))),
            }
        } else {
            if value.is_empty() {
                // libuci ignores `option NAME ''` while loading a file.
                return Ok(());
            }
            if let Some(i) = existing {
                if options[i].1 == Value::Single(value.clone()) {
                    return Ok(());
                }
                options.remove(i);
            }
            options.push((name, Value::Single(value)));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum NameCheck {
    None,
    Name,
    Package,
}

#[cfg(any(test, feature = "test-support"))]
/// One entry of `uci show` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShowLine {
    /// `package.section=type`
    Section {
        package: String,
        section: String,
        stype: String,
    },
    /// `package.section.option='value'` or `='a' 'b'` for a list. A list of one
    /// element is indistinguishable from a plain option in this format.
    Option {
        package: String,
        section: String,
        option: String,
        values: Vec<String>,
    },
}

/// Splits command output into logical lines: a newline inside a `'...'` value does
/// not end the line.
pub fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if c == '\n' && !quoted && !escaped {
            lines.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(c);
        if escaped {
            escaped = false;
        } else if c == '\'' {
            quoted = !quoted;
        } else if c == '\\' && !quoted {
            escaped = true;
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(any(test, feature = "test-support"))]
/// Parses the values after `=` in `uci show`/`uci changes` output: single-quoted
/// words (with `'\''` for a quote) separated by spaces.
pub fn parse_show_values(file: &str, line: usize, text: &str) -> Result<Vec<String>, ParseError> {
    let err = |problem: String, expected: &str| ParseError {
        file: file.to_string(),
        line,
        problem,
        expected: expected.to_string(),
    };
    let mut values = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut word = String::new();
        let mut any = false;
        loop {
            match chars.peek() {
                Some('\'') => {
                    chars.next();
                    any = true;
                    loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(c) => word.push(c),
                            None => {
                                return Err(err("unterminated quoted value".into(), "a closing '"));
                            }
                        }
                    }
                }
                Some('\\') => {
                    chars.next();
                    match chars.next() {
                        Some(c) => {
                            word.push(c);
                            any = true;
                        }
                        None => {
                            return Err(err(
                                "backslash at end of value".into(),
                                "an escaped character",
                            ));
                        }
                    }
                }
                Some(' ') | None => break,
                Some(&c) => {
                    return Err(err(
                        format!("unquoted character '{}' in value", c.escape_default()),
                        "values in single quotes separated by spaces",
                    ));
                }
            }
        }
        if !any {
            return Err(err("empty value".into(), "a value in single quotes"));
        }
        values.push(word);
        // Otherwise the next character is the separating space.
        if chars.next().is_none() {
            return Ok(values);
        }
    }
}

#[cfg(any(test, feature = "test-support"))]
/// Parses `uci show` output. `file` only labels errors.
pub fn parse_show(file: &str, text: &str) -> Result<Vec<ShowLine>, ParseError> {
    let mut out = Vec::new();
    let mut lineno = 1;
    for l in logical_lines(text) {
        let this = lineno;
        lineno += 1 + l.matches('\n').count();
        if l.is_empty() {
            continue;
        }
        let err = |problem: String, expected: &str| ParseError {
            file: file.to_string(),
            line: this,
            problem,
            expected: expected.to_string(),
        };
        let Some((key, rest)) = l.split_once('=') else {
            return Err(err(
                format!("no '=' in '{}'", l.escape_default()),
                "KEY=VALUE",
            ));
        };
        let parts: Vec<&str> = key.split('.').collect();
        match parts.as_slice() {
            [package, section] => {
                if !is_valid_type(rest) {
                    return Err(err(
                        format!("invalid section type '{}'", rest.escape_default()),
                        "package.section=type",
                    ));
                }
                out.push(ShowLine::Section {
                    package: package.to_string(),
                    section: section.to_string(),
                    stype: rest.to_string(),
                });
            }
            [package, section, option] => {
                if !is_valid_name(option) {
                    return Err(err(
                        format!("invalid option name '{}'", option.escape_default()),
                        "an option name of letters, digits and '_'",
                    ));
                }
                out.push(ShowLine::Option {
                    package: package.to_string(),
                    section: section.to_string(),
                    option: option.to_string(),
                    values: parse_show_values(file, this, rest)?,
                });
            }
            _ => {
                return Err(err(
                    format!(
                        "key '{}' has {} dot-separated parts",
                        key.escape_default(),
                        parts.len()
                    ),
                    "package.section or package.section.option",
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(any(test, feature = "test-support"))]
/// Builds sections from parsed `uci show` lines of one package. Values with one
/// element come back as [`Value::Single`] (the format cannot tell).
pub fn sections_from_show(lines: &[ShowLine]) -> Vec<Section> {
    let mut sections: Vec<(String, Section)> = Vec::new();
    for l in lines {
        match l {
            ShowLine::Section { section, stype, .. } => {
                let name = if section.starts_with('@') {
                    None
                } else {
                    Some(section.as_str())
                };
                sections.push((section.clone(), Section::new(stype, name)));
            }
            ShowLine::Option {
                section,
                option,
                values,
                ..
            } => {
                if let Some((_, s)) = sections.iter_mut().rev().find(|(r, _)| r == section) {
                    let v = if values.len() == 1 {
                        Value::Single(values[0].clone())
                    } else {
                        Value::List(values.clone())
                    };
                    s.options.push((option.clone(), v));
                }
            }
        }
    }
    let mut out: Vec<Section> = sections.into_iter().map(|(_, s)| s).collect();
    reindex(&mut out);
    out
}

#[cfg(any(test, feature = "test-support"))]
/// Renders sections the way `uci show PACKAGE` prints them.
pub fn render_show(package: &str, sections: &[Section]) -> String {
    let mut out = String::new();
    for s in sections {
        let r = s.reference();
        out.push_str(&format!("{package}.{r}={}\n", s.stype));
        for (name, v) in &s.options {
            let vals: Vec<String> = v.values().into_iter().map(quote).collect();
            out.push_str(&format!("{package}.{r}.{name}={}\n", vals.join(" ")));
        }
    }
    out
}

#[cfg(any(test, feature = "test-support"))]
/// Renders sections the way `uci export PACKAGE` prints them (anonymous sections
/// without a name).
pub fn render_export(package: &str, sections: &[Section]) -> String {
    let mut out = format!("package {package}\n");
    for s in sections {
        out.push_str(&format!("\nconfig {}", s.stype));
        if let Some(n) = &s.name {
            out.push_str(&format!(" {}", quote(n)));
        }
        out.push('\n');
        for (name, v) in &s.options {
            match v {
                Value::Single(x) => out.push_str(&format!("\toption {name} {}\n", quote(x))),
                Value::List(l) => {
                    for x in l {
                        out.push_str(&format!("\tlist {name} {}\n", quote(x)));
                    }
                }
            }
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(s: &Section, o: &str) -> String {
        s.get_single(o)
            .unwrap_or_else(|| panic!("option {o} missing"))
            .to_string()
    }

    #[test]
    fn basic_named_and_anonymous_sections() {
        let text = "package network\n\nconfig interface 'lan'\n\toption proto 'static'\n\tlist dns '2001:db8::1'\n\tlist dns \"2001:db8::2\"\n\nconfig rule\n\toption src lan\nconfig interface wan\n";
        let s = parse_config("network", text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name.as_deref(), Some("lan"));
        assert_eq!((s[0].stype.as_str(), s[0].index), ("interface", 0));
        assert_eq!(single(&s[0], "proto"), "static");
        assert_eq!(
            s[0].get("dns"),
            Some(&Value::List(vec![
                "2001:db8::1".into(),
                "2001:db8::2".into()
            ]))
        );
        assert_eq!((s[1].name.as_deref(), s[1].index), (None, 0));
        assert_eq!(s[1].reference(), "@rule[0]");
        assert_eq!((s[2].name.as_deref(), s[2].index), (Some("wan"), 1));
        assert_eq!(
            find_section(&s, "@interface[1]").unwrap().name.as_deref(),
            Some("wan")
        );
        assert_eq!(
            find_section(&s, "@interface[-1]").unwrap().name.as_deref(),
            Some("wan")
        );
        assert_eq!(
            find_section(&s, "@interface[-2]").unwrap().name.as_deref(),
            Some("lan")
        );
        assert!(find_section(&s, "@interface[2]").is_none());
        assert!(find_section(&s, "@interface[-3]").is_none());
        assert_eq!(
            find_section(&s, "@rule[0]").unwrap().get_single("src"),
            Some("lan")
        );
    }

    #[test]
    fn quoting_escapes_and_continuations() {
        let text = "config t a\n\toption v a'b c'\"d\\\"e\"\\f\\\ng\n\toption s 'no \\escape'\n\toption d \"x\\\\y\"\n\toption ml 'one\ntwo'\n\toption h val#comment\n\toption q 'it'\\''s'\n";
        let s = parse_config("t", text).unwrap();
        assert_eq!(single(&s[0], "v"), "ab cd\"efg");
        assert_eq!(single(&s[0], "s"), "no \\escape");
        assert_eq!(single(&s[0], "d"), "x\\y");
        assert_eq!(single(&s[0], "ml"), "one\ntwo");
        assert_eq!(single(&s[0], "h"), "val");
        assert_eq!(single(&s[0], "q"), "it's");
    }

    #[test]
    fn uci_option_semantics() {
        // Repeated option moves to the end; same value keeps its place; empty
        // option ignored; list converts a plain option; short command forms.
        let text = "c foo\n o x 1\n o y 2\n o z 3\n o x 4\n o z 3\n o y ''\n l z r\n l m ''\n";
        let s = parse_config("t", text).unwrap();
        let names: Vec<&str> = s[0].options.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["y", "x", "z", "m"]);
        assert_eq!(single(&s[0], "y"), "2");
        assert_eq!(
            s[0].get("z"),
            Some(&Value::List(vec!["3".into(), "r".into()]))
        );
        assert_eq!(s[0].get("m"), Some(&Value::List(vec![String::new()])));
    }

    #[test]
    fn semicolons_like_libuci() {
        let ok = |t: &str| parse_config("t", t).unwrap();
        // After a quoted word, `;` separates commands.
        let s = ok("config foo 'a'; option w 1\n");
        assert_eq!(s[0].get_single("w"), Some("1"));
        let s = ok("config foo a ; option w 1\n");
        assert_eq!(s[0].get_single("w"), Some("1"));
        // Directly after a bare word, libuci overwrites the `;` and drops the rest.
        let s = ok("config foo a; option w 1\n");
        assert_eq!(s[0].get("w"), None);
        // A trailing `;` leaves the newline as a command: rejected.
        let e = parse_config("t", "config foo 'a';\n").unwrap_err();
        assert!(e.problem.contains("';' at the end of a line"), "{e}");
    }

    #[test]
    fn redeclared_sections_merge_like_libuci() {
        let s = parse_config(
            "t",
            "config foo a\n option x 1\nconfig bar\nconfig foo a\n option y 2\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get_single("y"), Some("2"));
        assert_eq!(s[0].get_single("x"), Some("1"));
        let e = parse_config(
            "t",
            "config foo a\nconfig foo a\nconfig foo a\n option z 3\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse_config("t", "config foo a\nconfig bar a\n").unwrap_err();
        assert!(e.problem.contains("redeclared"), "{e}");
    }

    #[test]
    fn errors_name_file_line_problem_and_expectation() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "config foo a\n\toption 'x-y' 1\n",
                2,
                "invalid option name 'x-y'",
            ),
            ("config foo a-b\n", 1, "invalid section name 'a-b'"),
            ("config 'a b' c\n", 1, "invalid section type"),
            ("config foo a 'x'\n", 1, "unexpected extra argument 'x'"),
            ("\n\noption x 1\n", 3, "outside a section"),
            (
                "config foo a\n\toption x 'open\n\n",
                3,
                "single-quoted string opened on line 2",
            ),
            (
                "config foo a\n\toption x \"open\n",
                2,
                "double-quoted string",
            ),
            (
                "config foo\nfrobnicate\n",
                2,
                "invalid command 'frobnicate'",
            ),
            ("config\n", 1, "'config' without arguments"),
            ("config", 1, "'config' at end of file"),
            ("config ''\n", 1, "missing section type"),
            ("config foo\n\toption\t''\n", 2, "missing option name"),
            ("package 'a.b'\n", 1, "invalid package name"),
        ];
        for (text, line, what) in cases {
            let e = parse_config("net", text).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("net:{line}: ")), "{text:?}: {msg}");
            assert!(msg.contains(what), "{text:?}: {msg}");
            assert!(msg.contains("; expected "), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "{text:?}: {msg}");
        }
    }

    #[test]
    fn accepts_crlf_comments_and_package_lines() {
        let s = parse_config(
            "t",
            "# top\r\npackage t\r\nconfig foo 'a' # c\r\n\toption x '1'\r\n",
        )
        .unwrap();
        assert_eq!(s[0].get_single("x"), Some("1"));
    }

    #[test]
    fn show_output_round_trip() {
        let text = "config interface 'lan'\n\toption d 'it'\\''s \"q\"'\n\tlist a 'x y'\n\tlist a 'z'\n\tlist one 'only'\nconfig rule\n\toption ml 'a\nb'\n";
        let s = parse_config("t", text).unwrap();
        let shown = render_show("network", &s);
        assert!(
            shown.contains("network.lan.d='it'\\''s \"q\"'\n"),
            "{shown}"
        );
        assert!(shown.contains("network.lan.a='x y' 'z'\n"), "{shown}");
        assert!(shown.contains("network.@rule[0]=rule\n"), "{shown}");
        let lines = parse_show("show", &shown).unwrap();
        assert_eq!(
            lines[0],
            ShowLine::Section {
                package: "network".into(),
                section: "lan".into(),
                stype: "interface".into()
            }
        );
        let back = sections_from_show(&lines);
        assert_eq!(back[0].get_single("d"), Some("it's \"q\""));
        assert_eq!(back[0].get("a"), s[0].get("a"));
        assert_eq!(back[0].get_single("one"), Some("only"));
        assert_eq!(back[1].get_single("ml"), Some("a\nb"));
        assert_eq!(back[1].reference(), "@rule[0]");
        // Export rendering parses back to the same sections.
        assert_eq!(
            parse_config("export", &render_export("network", &s)).unwrap(),
            s
        );
    }

    #[test]
    fn show_parse_errors() {
        for (text, what) in [
            ("network.lan\n", "no '='"),
            ("network.lan.x=unquoted\n", "unquoted character"),
            ("network.lan.x='open\n", "unterminated"),
            ("a.b.c.d='x'\n", "4 dot-separated parts"),
            ("network.lan.x=\n", "empty value"),
        ] {
            let e = parse_show("uci show", text).unwrap_err().to_string();
            assert!(
                e.starts_with("uci show:1: ") && e.contains(what),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn logical_lines_keep_multiline_values() {
        let l = logical_lines("a.b.c='x\ny'\n-a.b.d\na.b.e+='it'\\''s'\n");
        assert_eq!(l, ["a.b.c='x\ny'", "-a.b.d", "a.b.e+='it'\\''s'"]);
    }

    #[test]
    fn never_panics_on_odd_input() {
        let samples = [
            "",
            "\\",
            "'",
            "\"",
            "config",
            "c x\\",
            "c x \"\\",
            "c x\n o y \"a\\\n",
            ";",
            "c x ;;;",
            "#",
            "c x\no y 'a\\'",
            "\0",
            "c \0 x",
            "c x\r",
            "c x\n\\\n",
            "c x\no y \\\r\n",
        ];
        for s in samples {
            let _ = parse_config("fuzz", s);
            let _ = parse_show("fuzz", s);
        }
    }
}
